"""Request IDs: taken from the request's header (or made up) and echoed on every response."""

import re
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_STATE_KEY = "dbos_request_id"
_VALID = re.compile(r"^[\x21-\x7e]{1,200}$")
"""A request ID worth echoing: 1-200 visible ASCII characters."""


def new_or_given(given: str | None) -> str:
    return given if given is not None and _VALID.match(given) else uuid.uuid4().hex


def request_id_of(request: Request, header: str) -> str:
    """The request's ID: the one the middleware chose, else the header's, else a new one."""
    chosen = request.scope.get("state", {}).get(_STATE_KEY)
    if isinstance(chosen, str):
        return chosen
    return new_or_given(request.headers.get(header))


class RequestIDMiddleware:
    """Pure ASGI middleware: every HTTP response carries the request's ID header, also the
    ones the router makes itself (404, 405)."""

    def __init__(self, app: ASGIApp, header: str) -> None:
        self.app = app
        self.header = header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_or_given(Headers(scope=scope).get(self.header))
        scope.setdefault("state", {})[_STATE_KEY] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if self.header not in headers:
                    headers.append(self.header, rid)
            await send(message)

        await self.app(scope, receive, send_with_id)
