"""DBOSASGI: HTTP routes on Starlette that start DBOS workflows (or call DBOS functions)."""

import asyncio
import inspect
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, TypeGuard, TypeVar, cast
from uuid import UUID

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dbos_asgi_serve._args import BadArguments, Signature, read_arguments
from dbos_asgi_serve._middleware import RequestIDMiddleware, request_id_of
from dbos_asgi_serve._types import (
    AuthenticationError,
    Authenticator,
    AuthResult,
    HTTPMethod,
    RouteSpec,
)
from dbos_sdk import (
    DBOS,
    DBOSConfigurationError,
    DBOSConflictingWorkflowError,
    DBOSLifecycleCallback,
    DBOSNotAuthorizedError,
    MethodRegistration,
    ReceiverRegistry,
    StartWorkflowOptions,
    WorkflowHandleAsync,
)

Handler = TypeVar("Handler", bound=Callable[..., object])
"""A function (sync or async, usually a DBOS workflow) that a route calls."""

_METHODS: frozenset[str] = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def _no_info() -> None:
    return None


def _new_routes() -> list[RouteSpec]:
    return []


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class DBOSASGI(DBOSLifecycleCallback):
    """An ASGI app whose routes run DBOS functions.

    Decorate functions with ``@api.post(path)`` (or ``get``, ``put``, ``patch``,
    ``delete``, ``route``) above ``@DBOS.workflow()`` before ``DBOS.launch()``; serve
    ``api.app`` (a Starlette app) with any ASGI server, or add ``api.routes`` to a
    FastAPI or Starlette app.

    A request's arguments come from the path parameters, the query string and (except for
    GET) a JSON object body, checked against the function's signature. A workflow runs
    durably and the response is its JSON-encoded result; the request header
    ``dbos-idempotency-key`` becomes the workflow ID, so a retried request returns the
    recorded result instead of running the workflow again. The ``authenticate`` hook
    turns a request into ``(user, roles)``, and the function runs in that authenticated
    context (``DBOS.required_roles`` is enforced).

    Status codes: 200 with the result; 400 for a bad JSON body or arguments that do not fit
    the signature; 401 when the hook raises AuthenticationError; 403 when the user lacks a
    required role; 409 when the idempotency key names a workflow of another function; 503
    before launch and during shutdown; 500 for any other error (logged with the request
    ID; the body does not reveal the exception). Errors are ``{"error": message,
    "request_id": id}``. Every response echoes the ``x-request-id`` request header (a new
    ID when there is none); workflow responses carry ``dbos-workflow-id``.
    """

    name: str
    authenticate: Authenticator | None
    request_id_header: str
    idempotency_header: str

    def __init__(
        self,
        *,
        name: str = "asgi",
        authenticate: Authenticator | None = None,
        request_id_header: str = "x-request-id",
        idempotency_header: str = "dbos-idempotency-key",
    ) -> None:
        for setting, value in (
            ("request_id_header", request_id_header),
            ("idempotency_header", idempotency_header),
        ):
            if not value or not value.isascii() or any(c in value for c in " :\r\n"):
                raise DBOSConfigurationError(
                    f"DBOSASGI({name!r}): {setting}={value!r} is not an HTTP header name."
                )
        self.name = name
        self.authenticate = authenticate
        self.request_id_header = request_id_header.lower()
        self.idempotency_header = idempotency_header.lower()
        self._registry = ReceiverRegistry(
            f"asgi:{name}", class_info=_no_info, method_info=_new_routes, param_info=_no_info
        )
        self._app = Starlette(
            middleware=[Middleware(RequestIDMiddleware, header=self.request_id_header)]
        )
        self._specs: list[RouteSpec] = []
        self._live: dict[RouteSpec, MethodRegistration] = {}
        self._registered = False

    @property
    def app(self) -> Starlette:
        """The Starlette app serving every route (with request-ID middleware)."""
        return self._app

    @property
    def routes(self) -> list[BaseRoute]:
        """The routes, to add to another Starlette or FastAPI app
        (``app.router.routes.extend(api.routes)``). Responses from them echo the request
        ID too; 404s of the other app do not."""
        return list(self._app.router.routes)

    # --- registration ---------------------------------------------------------------------

    def route(self, path: str, *, methods: Sequence[HTTPMethod]) -> Callable[[Handler], Handler]:
        """Serve ``path`` (Starlette syntax, e.g. ``/orders/{order_id:int}``) for
        ``methods`` by calling the decorated function. Place it above
        ``@DBOS.workflow()``. The function keeps its signature."""

        def decorate(func: Handler) -> Handler:
            function = getattr(func, "__qualname__", repr(func))
            where = f"DBOSASGI {self.name!r}, route {path!r} for function {function!r}"
            spec = self._check_route(path, methods, function, where)
            sig = Signature.of(func, function, where)
            if not self._registered:
                DBOS.register_lifecycle_callback(self)
                self._registered = True
            DBOS.associate_function_with_info(self._registry, func).append(spec)
            self._specs.append(spec)
            self._app.router.routes.append(
                Route(path, self._endpoint(spec, sig), methods=list(spec.methods))
            )
            return func

        return decorate

    def get(self, path: str) -> Callable[[Handler], Handler]:
        """``route(path, methods=["GET"])``: arguments from the path and query string."""
        return self.route(path, methods=["GET"])

    def post(self, path: str) -> Callable[[Handler], Handler]:
        """``route(path, methods=["POST"])``: arguments from a JSON object body too."""
        return self.route(path, methods=["POST"])

    def put(self, path: str) -> Callable[[Handler], Handler]:
        """``route(path, methods=["PUT"])``."""
        return self.route(path, methods=["PUT"])

    def patch(self, path: str) -> Callable[[Handler], Handler]:
        """``route(path, methods=["PATCH"])``."""
        return self.route(path, methods=["PATCH"])

    def delete(self, path: str) -> Callable[[Handler], Handler]:
        """``route(path, methods=["DELETE"])``."""
        return self.route(path, methods=["DELETE"])

    def _check_route(self, path: object, methods: object, function: str, where: str) -> RouteSpec:
        if not isinstance(path, str) or not path.startswith("/"):
            raise DBOSConfigurationError(f"{where}: the path must be a string starting with '/'.")
        if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
            raise DBOSConfigurationError(
                f"{where}: methods={methods!r} must be a non-empty list such as ['POST']."
            )
        checked: list[HTTPMethod] = []
        for m in cast("Sequence[object]", methods):
            if not _is_method(m):
                raise DBOSConfigurationError(
                    f"{where}: methods contains {m!r}; use {sorted(_METHODS)}."
                )
            checked.append(m)
        for other in self._specs:
            if other.path == path and set(other.methods) & set(checked):
                raise DBOSConfigurationError(
                    f"{where}: {path!r} already serves {sorted(set(other.methods) & set(checked))} "
                    f"for function {other.function!r}."
                )
        return RouteSpec(path=path, methods=tuple(checked), function=function)

    # --- lifecycle -------------------------------------------------------------------------

    def initialize(self) -> None:
        """At launch: look up each route's function; from now on the routes serve."""
        live: dict[RouteSpec, MethodRegistration] = {}
        for reg in DBOS.get_associated_info(self._registry):
            for spec in reg.method_config:
                live[spec] = reg.method_reg
        self._live = live

    def destroy(self) -> None:
        """At shutdown: the routes answer 503 again."""
        self._live = {}

    def log_registered_endpoints(self) -> None:
        """One line per route."""
        for spec, reg in self._live.items():
            DBOS.logger.info(
                "DBOSASGI %r: %s %s -> %s %s",
                self.name,
                ",".join(spec.methods),
                spec.path,
                reg.kind or "function",
                reg.name,
            )

    # --- requests --------------------------------------------------------------------------

    def _endpoint(
        self, spec: RouteSpec, sig: Signature
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            rid = request_id_of(request, self.request_id_header)
            workflow_id: str | None = None
            try:
                reg = self._live.get(spec)
                if reg is None:
                    raise _HTTPError(503, "DBOS is not launched; try again shortly.")
                key = request.headers.get(self.idempotency_header)
                if key is not None and not key.strip():
                    raise _HTTPError(400, f"the {self.idempotency_header} header is empty.")
                user = await self._authenticate(request)
                kwargs = await read_arguments(request, sig)
                if reg.kind == "workflow":
                    workflow_id = key or str(uuid.uuid4())
                value = await self._call(reg, kwargs, user, workflow_id)
                return self._respond(200, _encode(value, spec.function), rid, workflow_id)
            except BadArguments as exc:
                return self._error(400, str(exc), rid, workflow_id)
            except _HTTPError as exc:
                return self._error(exc.status, exc.message, rid, workflow_id)
            except AuthenticationError as exc:
                return self._error(401, str(exc) or "not authenticated", rid, workflow_id)
            except DBOSNotAuthorizedError as exc:
                return self._error(403, str(exc), rid, workflow_id)
            except DBOSConflictingWorkflowError as exc:
                return self._error(409, str(exc), rid, workflow_id)
            except HTTPException as exc:
                return self._error(exc.status_code, exc.detail, rid, workflow_id)
            except Exception:
                DBOS.logger.exception(
                    "DBOSASGI %r: %s %s (request %s, workflow %s) failed",
                    self.name,
                    request.method,
                    request.url.path,
                    rid,
                    workflow_id,
                )
                return self._error(500, "internal server error", rid, workflow_id)

        endpoint.__name__ = endpoint.__qualname__ = f"{spec.function} ({spec.path})"
        return endpoint

    async def _authenticate(self, request: Request) -> AuthResult | None:
        if self.authenticate is None:
            return None
        result: object = self.authenticate(request)
        if inspect.isawaitable(result):
            result = await result
        return _auth_result(result)

    async def _call(
        self,
        reg: MethodRegistration,
        kwargs: dict[str, object],
        user: AuthResult | None,
        workflow_id: str | None,
    ) -> object:
        if workflow_id is not None:

            async def start() -> None:
                options = StartWorkflowOptions(workflow_id=workflow_id)
                await DBOS.start_workflow_registered_async(reg, (), kwargs, options)

            await self._as(user, start)
            # The start returned, so the workflow is recorded: wait for its result
            # without tying up a thread.
            return await WorkflowHandleAsync[object](workflow_id).get_result()

        async def call() -> object:
            if reg.is_async:
                result: object = await reg.invoke(**kwargs)
                return result
            return await asyncio.to_thread(reg.invoke, **kwargs)

        return await self._as(user, call)

    @staticmethod
    async def _as(user: AuthResult | None, callback: Callable[[], Awaitable[Any]]) -> Any:
        if user is None:
            return await callback()
        return await DBOS.with_authed_context_async(user[0], user[1], callback)

    def _respond(self, status: int, body: bytes, rid: str, workflow_id: str | None) -> Response:
        headers = {self.request_id_header: rid}
        if workflow_id is not None:
            headers["dbos-workflow-id"] = workflow_id
        return Response(body, status, headers, media_type="application/json")

    def _error(self, status: int, message: str, rid: str, workflow_id: str | None) -> Response:
        body = json.dumps({"error": message, "request_id": rid}).encode()
        # Only a 500 may come from a workflow that exists (and failed); a 403 or 409 is
        # raised before the workflow is recorded.
        return self._respond(status, body, rid, workflow_id if status == 500 else None)


def _is_method(value: object) -> TypeGuard[HTTPMethod]:
    return isinstance(value, str) and value in _METHODS


def _auth_result(result: object) -> AuthResult | None:
    """What an authentication hook returned, checked: (user, roles) or None."""
    if result is None:
        return None
    if isinstance(result, tuple):
        parts = cast("tuple[object, ...]", result)
        if len(parts) == 2 and isinstance(parts[0], str):
            roles = parts[1]
            if isinstance(roles, list | tuple):
                items = list(cast("Sequence[object]", roles))
                names = [r for r in items if isinstance(r, str)]
                if len(names) == len(items):
                    return parts[0], names
    raise TypeError(
        f"an authenticate hook returned {result!r}; it must return (user, [roles]) or None."
    )


def _encode(value: object, function: str) -> bytes:
    try:
        return json.dumps(value, default=_json_default).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the result of {function} is not JSON-serializable: {exc}") from exc


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return list(cast("set[object] | frozenset[object]", value))
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")
