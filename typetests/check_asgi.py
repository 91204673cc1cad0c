"""Typetests: dbos_asgi_serve keeps handler signatures and rejects bad settings.

Checked (never run) by mypy --strict and pyright strict; negative lines carry both
checkers' ignore comments (TYPING.md §4.2).
"""

from typing import assert_type

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import BaseRoute

from dbos_asgi_serve import DBOSASGI, AuthenticationError, AuthResult, HTTPMethod
from dbos_sdk import DBOS, DBOSLifecycleCallback


def sync_auth(request: Request) -> AuthResult | None:
    token = request.headers.get("authorization")
    if token is None:
        return None
    if token != "Bearer ok":
        raise AuthenticationError("bad token")
    return "alice", ["admin"]


async def async_auth(request: Request) -> tuple[str, list[str]]:
    return "bob", []


api = DBOSASGI(authenticate=sync_auth)
other = DBOSASGI(name="other", authenticate=async_auth, request_id_header="x-trace-id")


@api.post("/orders")
@DBOS.workflow()
def place_order(item: str, quantity: int = 1) -> dict[str, int]:
    return {item: quantity}


@api.get("/orders/{order_id:int}")
@DBOS.workflow(name="orders.get")
async def get_order(order_id: int, *, verbose: bool = False) -> list[str]:
    return []


@api.route("/orders/{order_id:int}", methods=["PUT", "PATCH"])
@DBOS.workflow()
@DBOS.required_roles(["admin"])
def update_order(order_id: int, quantity: int) -> None:
    return None


@api.delete("/cache")
def clear_cache() -> bool:
    return True


def calls() -> None:
    assert_type(place_order("x"), dict[str, int])
    assert_type(place_order("x", quantity=2), dict[str, int])
    assert_type(update_order(1, 2), None)
    assert_type(clear_cache(), bool)
    place_order(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    place_order("x", 1, 2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    assert_type(api.app, Starlette)
    assert_type(api.routes, list[BaseRoute])
    method: HTTPMethod = "PATCH"
    del method
    callback: DBOSLifecycleCallback = api
    del callback


async def async_calls() -> None:
    assert_type(await get_order(1), list[str])
    assert_type(await get_order(1, verbose=True), list[str])
    await get_order(1, True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


# --- bad settings are rejected ----------------------------------------------------------


def no_request() -> AuthResult:
    return "u", []


def wrong_result(request: Request) -> str:
    return "alice"


def bad_settings() -> None:
    api.route("/x", methods=["FETCH"])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    api.route("/x", methods="GET")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    api.route("/x")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    api.post(42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    api.get("/x", methods=["GET"])  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    DBOSASGI(authenticate=no_request)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    DBOSASGI(authenticate=wrong_result)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    DBOSASGI(authenticate=lambda: None)  # type: ignore[arg-type, misc]  # pyright: ignore[reportArgumentType]
    DBOSASGI(request_id_header=None)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    DBOSASGI("asgi")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
