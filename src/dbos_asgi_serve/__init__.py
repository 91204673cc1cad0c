"""dbos-asgi-serve: serve DBOS workflows over HTTP, on Starlette (usable from FastAPI).

::

    api = DBOSASGI(authenticate=check_token)

    @api.post("/orders")
    @DBOS.workflow()
    def place_order(item: str, quantity: int = 1) -> dict[str, object]: ...

    DBOS.launch()
    uvicorn.run(api.app)

Arguments come from the path, the query string and a JSON body, checked against the
signature (400 when they do not fit); the ``dbos-idempotency-key`` header becomes the
workflow ID; the ``authenticate`` hook supplies (user, roles) for ``DBOS.required_roles``
(403 without a required role); other errors are 500; request IDs are echoed. Built on the
public receiver API of dbos_sdk only.
"""

from dbos_asgi_serve._app import DBOSASGI, Handler
from dbos_asgi_serve._types import (
    AuthenticationError,
    Authenticator,
    AuthResult,
    HTTPMethod,
    RouteSpec,
)

__all__ = [
    "DBOSASGI",
    "AuthResult",
    "AuthenticationError",
    "Authenticator",
    "HTTPMethod",
    "Handler",
    "RouteSpec",
]
