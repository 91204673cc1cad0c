"""Registration of datasources and transactions, and the wrapper every transaction call
goes through: nesting and role checks, then the engine's step machinery (a transaction is
a step of kind "transaction" whose body calls the handler)."""

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

from dbos_sdk._context import current_auth, current_step, current_workflow
from dbos_sdk._registry import REG_ATTR, REGISTRY, PluginHook, RegisteredFunction, registration_of
from dbos_sdk._step import run_step_async, run_step_sync
from dbos_sdk._workflow import _check_roles  # pyright: ignore[reportPrivateUsage]
from dbos_sdk.errors import DBOSNestedTransactionError, DBOSRegistrationError

from ._core import TransactionCall, step_for, transaction_call
from ._protocols import AsyncDataSourceTransactionHandler, DataSourceTransactionHandler

P = ParamSpec("P")
R = TypeVar("R")

AnyHandler = DataSourceTransactionHandler[Any] | AsyncDataSourceTransactionHandler[Any]

_active: ContextVar[str | None] = ContextVar("dbos_active_transaction", default=None)
"""The name of the transaction whose function runs now (in this task or thread)."""


@dataclass(slots=True, eq=False, kw_only=True)
class DataSourceHook(PluginHook):
    """The runtime's start/stop hook of one datasource, and the handler behind it."""

    handler: AnyHandler


def is_async_handler(handler: AnyHandler) -> bool:
    return inspect.iscoroutinefunction(handler.invoke_transaction_function)


def register_data_source(handler: AnyHandler) -> None:
    """Register a datasource (before ``DBOS.launch()``): it is initialized at launch, after
    the system database is ready and before recovery, and destroyed at shutdown, after
    workflow processing stops. Its ``name`` must be unique in the process."""
    with REGISTRY.lock:
        REGISTRY.check_open(f"datasource {handler.name!r}")
        for hook in REGISTRY.datasources:
            if hook.name == handler.name:
                raise DBOSRegistrationError(
                    f"Two datasources are registered under the name {handler.name!r}; give "
                    "each datasource its own name."
                )
        REGISTRY.datasources.append(
            DataSourceHook(
                name=handler.name, start=handler.initialize, stop=handler.destroy, handler=handler
            )
        )


def data_source_named(ds_name: str) -> AnyHandler:
    for hook in REGISTRY.datasources:
        if isinstance(hook, DataSourceHook) and hook.name == ds_name:
            return hook.handler
    known = [h.name for h in REGISTRY.datasources if isinstance(h, DataSourceHook)]
    raise DBOSRegistrationError(
        f"No datasource named {ds_name!r} is registered (registered: {known}); create it "
        "(which registers it) before registering or running its transactions."
    )


class TransactionBody:
    """The function the engine runs as the step: it calls the handler with the user's
    function. ``__code__`` is the user function's, so the registry recognises a
    re-definition of the same transaction."""

    __slots__ = ("__code__", "config", "func", "handler", "is_async", "name")

    def __init__(
        self,
        handler: AnyHandler,
        func: Callable[..., Any],
        name: str,
        config: object | None,
        is_async: bool,
    ) -> None:
        self.handler = handler
        self.func = func
        self.name = name
        self.config = config
        self.is_async = is_async
        self.__code__: object = getattr(func, "__code__", func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_async:
            return self._call_async(args, kwargs)
        handler = cast(DataSourceTransactionHandler[Any], self.handler)
        call = transaction_call.set(TransactionCall(self.name, step_for(self.name)))
        active = _active.set(self.name)
        try:
            return handler.invoke_transaction_function(self.config, self.func, *args, **kwargs)
        finally:
            _active.reset(active)
            transaction_call.reset(call)

    async def _call_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        handler = cast(AsyncDataSourceTransactionHandler[Any], self.handler)
        call = transaction_call.set(TransactionCall(self.name, step_for(self.name)))
        active = _active.set(self.name)
        try:
            return await handler.invoke_transaction_function(
                self.config, self.func, *args, **kwargs
            )
        finally:
            _active.reset(active)
            transaction_call.reset(call)


def _check_call(reg: RegisteredFunction) -> None:
    """Refuse nesting; enforce required roles (as a workflow does)."""
    outer = _active.get()
    if outer is not None or current_step.get() is not None:
        where = f"transaction {outer!r}" if outer is not None else "a step"
        raise DBOSNestedTransactionError(
            f"Transaction {reg.name!r} was called inside {where}; a step or transaction is "
            "one checkpointed unit, so call the transaction from the workflow instead (or "
            "do its work in the outer transaction, through the same client)."
        )
    if reg.required_roles is not None:
        auth = current_auth.get()
        ctx = current_workflow.get()
        roles = auth.roles if auth else (ctx.authenticated_roles if ctx else None)
        _check_roles(reg, roles)


def _pending_roles(func: Callable[..., Any]) -> tuple[str, ...] | None:
    roles = getattr(func, "__dbos_required_roles__", None)
    return tuple(roles) if roles is not None else None


def _check_kind(handler: AnyHandler, func: Callable[..., Any], name: str, how: str) -> bool:
    """Whether the transaction is async; refuse an async function on a sync datasource
    and the other way round."""
    func_async = inspect.iscoroutinefunction(func)
    handler_async = is_async_handler(handler)
    if func_async and not handler_async:
        raise DBOSRegistrationError(
            f"{how}: {name!r} is an async function, but datasource {handler.name!r} "
            f"({handler.ds_type}) is synchronous; make it a plain def, or use an async "
            "datasource (e.g. AsyncPsycopgDataSource, AsyncSQLAlchemyDataSource)."
        )
    if handler_async and not func_async:
        raise DBOSRegistrationError(
            f"{how}: {name!r} is a plain function, but datasource {handler.name!r} "
            f"({handler.ds_type}) is async; make it an async def, or use a synchronous "
            "datasource."
        )
    return func_async


def make_transaction(
    handler: AnyHandler, func: Callable[P, R], name: str | None, config: object | None
) -> Callable[P, R]:
    """Register ``func`` as a transaction of ``handler``; return its wrapper."""
    reg_name = name or func.__qualname__
    if registration_of(func) is not None:
        raise DBOSRegistrationError(
            f"{reg_name!r} is already decorated by DBOS; apply one of @DBOS.workflow, "
            "@DBOS.step or a transaction decorator, once."
        )
    is_async = _check_kind(handler, func, reg_name, "register_transaction")
    reg = RegisteredFunction(
        name=reg_name,
        kind="transaction",
        func=TransactionBody(handler, func, reg_name, config, is_async),
        is_async=is_async,
        required_roles=_pending_roles(func),
    )
    if is_async:

        async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            _check_call(reg)
            return await run_step_async(reg, args, kwargs)

        wrapper: Callable[..., Any] = functools.wraps(func)(awrapper)
    else:

        def swrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            _check_call(reg)
            return run_step_sync(reg, args, kwargs)

        wrapper = functools.wraps(func)(swrapper)
    setattr(wrapper, REG_ATTR, reg)
    reg.wrapper = wrapper
    REGISTRY.add_function(reg)
    return cast(Callable[P, R], wrapper)


def _inline(
    handler: AnyHandler, func: Callable[..., Any], name: str, config: object | None
) -> RegisteredFunction:
    is_async = _check_kind(handler, func, name, "run_transaction")
    return RegisteredFunction(
        name=name,
        kind="transaction",
        func=TransactionBody(handler, func, name, config, is_async),
        is_async=is_async,
    )


def run_transaction_on(
    handler: AnyHandler, func: Callable[[], R], name: str, config: object | None
) -> R:
    """Run ``func`` now as a transaction of ``handler`` (a step inside a workflow)."""
    reg = _inline(handler, func, name, config)
    _check_call(reg)
    return cast(R, run_step_sync(reg, (), {}))


async def run_transaction_on_async(
    handler: AnyHandler, func: Callable[[], Awaitable[R]], name: str, config: object | None
) -> R:
    """Async twin of :func:`run_transaction_on`."""
    reg = _inline(handler, func, name, config)
    _check_call(reg)
    return cast(R, await run_step_async(reg, (), {}))


# --- the module-level API (by datasource name) ---------------------------------------


def register_transaction(
    ds_name: str,
    func: Callable[P, R],
    /,
    *,
    name: str | None = None,
    config: object | None = None,
) -> Callable[P, R]:
    """Register ``func`` as a transaction of the datasource named ``ds_name`` (before
    launch); return it wrapped, with the same signature. ``name`` is what its steps are
    recorded as (default: the function's qualified name)."""
    return make_transaction(data_source_named(ds_name), func, name, config)


def register_transaction_async(
    ds_name: str,
    func: Callable[P, Coroutine[Any, Any, R]],
    /,
    *,
    name: str | None = None,
    config: object | None = None,
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Async twin of :func:`register_transaction`, for an async datasource."""
    return make_transaction(data_source_named(ds_name), func, name, config)


def run_transaction(
    func: Callable[[], R], /, *, name: str, ds_name: str, config: object | None = None
) -> R:
    """Run ``func`` now as a transaction of datasource ``ds_name``: a checkpointed step
    (recorded as ``name``) inside a workflow, a plain transaction outside one."""
    return run_transaction_on(data_source_named(ds_name), func, name, config)


async def run_transaction_async(
    func: Callable[[], Awaitable[R]], /, *, name: str, ds_name: str, config: object | None = None
) -> R:
    """Async twin of :func:`run_transaction`, for an async datasource."""
    return await run_transaction_on_async(data_source_named(ds_name), func, name, config)
