"""Public records and aliases of dbos_asgi_serve."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

import attrs
from starlette.requests import Request

HTTPMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
"""The HTTP methods a route may accept."""

AuthResult = tuple[str, Sequence[str]]
"""What an authentication hook returns for an authenticated request: (user, roles)."""

Authenticator = Callable[[Request], AuthResult | Awaitable[AuthResult | None] | None]
"""An authentication hook (sync or async): (user, roles) for an authenticated request,
None for an anonymous one; raise AuthenticationError to refuse the request (401)."""


class AuthenticationError(Exception):
    """Raised by an authentication hook to refuse a request: the response is 401 with
    this exception's message."""


@attrs.frozen(kw_only=True)
class RouteSpec:
    """One route that a DBOSASGI app maps to a function."""

    path: str
    methods: tuple[HTTPMethod, ...]
    function: str
    """The function's qualified name, for messages and logs."""
