"""Durable workflows over HTTP with dbos_asgi_serve and uvicorn.

    python examples/asgi_example.py          # serves http://127.0.0.1:8000

    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
         -H 'dbos-idempotency-key: order-1' -d '{"item": "teapot", "quantity": 2}'
    curl localhost:8000/orders/order-1
    curl -X POST localhost:8000/refunds -H 'authorization: Bearer admin-token' \\
         -H 'content-type: application/json' -d '{"order_id": "order-1"}'

Repeat the first call: the idempotency key is the workflow ID, so the recorded result
comes back and the workflow does not run again. Without the admin token the refund is
403; with a bad JSON body or a missing argument any call is 400. Each response echoes the
x-request-id header (or a generated one). Set DBOS_SYSTEM_DATABASE_URL for Postgres.
"""

import os

import uvicorn
from starlette.requests import Request

from dbos_asgi_serve import DBOSASGI, AuthenticationError
from dbos_sdk import DBOS, DBOSConfig

USERS = {"admin-token": ("ada", ["admin"]), "user-token": ("bob", ["customer"])}


def authenticate(request: Request) -> tuple[str, list[str]] | None:
    """Bearer tokens from a table; anonymous without a header; 401 for unknown tokens."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    token = header.removeprefix("Bearer ")
    if token not in USERS:
        raise AuthenticationError("unknown token")
    return USERS[token]


api = DBOSASGI(authenticate=authenticate)


@DBOS.step()
def reserve_stock(item: str, quantity: int) -> int:
    print(f"  reserving {quantity} x {item}")
    return quantity


@api.post("/orders")
@DBOS.workflow()
def place_order(item: str, quantity: int = 1) -> dict[str, object]:
    reserved = reserve_stock(item, quantity)
    return {"order_id": DBOS.workflow_id, "item": item, "reserved": reserved}


@api.get("/orders/{order_id}")
def order_status(order_id: str) -> dict[str, object]:
    """Not a workflow: a plain function, called for each request."""
    status = DBOS.get_workflow_status(order_id)
    return {"order_id": order_id, "status": status.status if status else "unknown"}


@api.post("/refunds")
@DBOS.workflow()
@DBOS.required_roles(["admin"])
def refund(order_id: str) -> dict[str, object]:
    return {"refunded": order_id, "by": DBOS.authenticated_user}


def main() -> None:
    url = os.environ.get("DBOS_SYSTEM_DATABASE_URL", "sqlite:///asgi_example.sqlite")
    DBOS(DBOSConfig("asgi_example", system_database_url=url))
    DBOS.launch()
    try:
        uvicorn.run(api.app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
    finally:
        DBOS.shutdown()


if __name__ == "__main__":
    main()
