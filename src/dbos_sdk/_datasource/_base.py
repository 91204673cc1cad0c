"""Base classes that implement both datasource contracts on a few database hooks.

A datasource author subclasses :class:`SyncDataSource` or :class:`AsyncDataSource` and
supplies: open a transaction with a config, commit it (writing the checkpoint in it),
roll back, release, read a checkpoint, record an error checkpoint, and say which errors
are retriable. The method of operation (``_core.transaction_protocol``) is shared; the two
drivers below differ only in ``await``.
"""

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from typing_extensions import deprecated

from dbos_sdk._context import mark_recorded_elsewhere
from dbos_sdk._outcome import Outcome
from dbos_sdk.errors import DBOSConfigurationError, DBOSNotInTransactionError

from ._core import (
    CONFLICT,
    Attempt,
    Lookup,
    RecordError,
    Settled,
    TransactionPlan,
    TransactionStep,
    Wait,
    current_transaction_step,
    transaction_call,
    transaction_protocol,
)
from ._records import TransactionCheckpoint, TransactionConfig, TransactionRetryPolicy
from ._register import make_transaction, run_transaction_on, run_transaction_on_async

P = ParamSpec("P")
R = TypeVar("R")
ClientT = TypeVar("ClientT")
ConfigT = TypeVar("ConfigT", bound=TransactionConfig)

logger = logging.getLogger("dbos_sdk")


class _DataSourceBase(ABC, Generic[ClientT, ConfigT]):
    """What both base classes share: identity, config checking and the client slot."""

    name: str
    ds_type: str
    retry: TransactionRetryPolicy
    """The retry bound of this datasource's transactions."""
    _config_type: type[ConfigT]
    _default_config: ConfigT
    _client_var: ContextVar[ClientT | None]

    def __init__(
        self,
        name: str,
        *,
        ds_type: str,
        config_type: type[ConfigT],
        retry: TransactionRetryPolicy | None = None,
    ) -> None:
        if not name:
            raise DBOSConfigurationError(f"A {ds_type} datasource needs a non-empty name.")
        self.name = name
        self.ds_type = ds_type
        self.retry = retry if retry is not None else TransactionRetryPolicy()
        self._config_type = config_type
        self._default_config = config_type()
        self._client_var = ContextVar(f"dbos_ds_client_{name}", default=None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def client(self) -> ClientT:
        """The client of the transaction in progress; DBOSNotInTransactionError elsewhere."""
        client = self._client_var.get()
        if client is None:
            raise DBOSNotInTransactionError(
                f"{self!r}.client was read outside one of its transactions; read it inside "
                "a function decorated with @ds.transaction() (or registered with "
                "ds.register_transaction, or run by ds.run_transaction)."
            )
        return client

    def _config_of(self, config: object | None) -> ConfigT:
        if config is None:
            return self._default_config
        if callable(config):
            raise DBOSConfigurationError(
                f"{self!r}.transaction was given a function as its config: write "
                "@ds.transaction() with parentheses (or @ds.transaction(Config(...)))."
            )
        if not isinstance(config, self._config_type):
            raise DBOSConfigurationError(
                f"{self!r} takes a {self._config_type.__name__} as its transaction config, "
                f"not a {type(config).__name__}."
            )
        return config

    def _plan(self, config: ConfigT, func: Callable[..., Any]) -> TransactionPlan:
        call = transaction_call.get()
        step = current_transaction_step()
        return TransactionPlan(
            name=call.name if call is not None else getattr(func, "__qualname__", repr(func)),
            step=None if config.read_only else step,
            retry=self.retry,
            is_retriable=self.is_retriable_error,
        )

    @abstractmethod
    def is_retriable_error(self, error: BaseException) -> bool:
        """Whether ``error`` is transient (serialization failure, deadlock, lost
        connection, busy database): the transaction is then retried with backoff."""


class SyncDataSource(_DataSourceBase[ClientT, ConfigT]):
    """Base of a synchronous datasource: implements ``DataSourceTransactionHandler[ClientT]``
    and ``DBOSDataSource[ConfigT]`` on the hooks below. Subclasses call
    ``register_data_source(self)`` at the end of their ``__init__``."""

    @abstractmethod
    def initialize(self) -> None:
        """At launch: connect, and verify (or create) the checkpoint schema."""

    @abstractmethod
    def destroy(self) -> None:
        """At shutdown: close what this datasource opened (not what it was handed)."""

    @abstractmethod
    def _open_transaction(self, config: ConfigT) -> ClientT:
        """Acquire a connection and begin a transaction configured by ``config``."""

    def _before_commit(self, client: ClientT) -> None:
        """Called when the function has returned, before its output is encoded for the
        checkpoint: e.g. flush an ORM session, so the output holds generated keys."""
        del client

    @abstractmethod
    def _commit_transaction(
        self, client: ClientT, checkpoint: TransactionCheckpoint | None
    ) -> bool:
        """Insert ``checkpoint`` (if any) in the open transaction and commit. If its key
        exists already, roll back and return False; otherwise return True."""

    @abstractmethod
    def _rollback_transaction(self, client: ClientT) -> None:
        """Roll the open transaction back (it may have failed already)."""

    @abstractmethod
    def _close_transaction(self, client: ClientT) -> None:
        """Release what :meth:`_open_transaction` acquired (always called, once)."""

    @abstractmethod
    def _read_checkpoint(self, workflow_id: str, step_id: int) -> TransactionCheckpoint | None:
        """The committed checkpoint of that step, or None."""

    @abstractmethod
    def _write_error_checkpoint(self, checkpoint: TransactionCheckpoint) -> bool:
        """Insert ``checkpoint`` in a transaction of its own unless its key exists;
        return whether it was inserted."""

    # --- DataSourceTransactionHandler -------------------------------------------------

    def invoke_transaction_function(
        self, config: object | None, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Run ``func`` in a transaction by the method of operation (see the module doc of
        :mod:`dbos_sdk.datasource`) and return its result (or the recorded one)."""
        cfg = self._config_of(config)
        plan = self._plan(cfg, func)
        proto = transaction_protocol(plan)
        reply: Outcome | None = None
        while True:
            try:
                instr = proto.send(reply) if reply is not None else next(proto)
            except StopIteration as stop:
                return cast(R, _settle(stop.value))
            if isinstance(instr, Attempt):
                reply = self._attempt(cfg, instr.checkpoint_step, func, args, kwargs)
            elif isinstance(instr, Lookup):
                assert plan.step is not None
                reply = _try(self._read_checkpoint, plan.step.workflow_id, plan.step.step_id)
            elif isinstance(instr, RecordError):
                reply = _try(self._write_error_checkpoint, instr.checkpoint)
            else:
                assert isinstance(instr, Wait)
                time.sleep(instr.seconds)
                reply = Outcome()

    def _attempt(
        self,
        cfg: ConfigT,
        step: TransactionStep | None,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Outcome:
        try:
            client = self._open_transaction(cfg)
        except Exception as exc:
            return Outcome(error=exc)
        try:
            token = self._client_var.set(client)
            try:
                value = func(*args, **kwargs)
            finally:
                self._client_var.reset(token)
            self._before_commit(client)
            checkpoint = step.encode_output(value) if step is not None else None
            committed = self._commit_transaction(client, checkpoint)
            return Outcome(value=value if committed else CONFLICT)
        except Exception as exc:
            self._rollback_quietly(client)
            return Outcome(error=exc)
        except BaseException:
            self._rollback_quietly(client)
            raise
        finally:
            self._close_transaction(client)

    def _rollback_quietly(self, client: ClientT) -> None:
        try:
            self._rollback_transaction(client)
        except Exception as exc:  # the connection may be gone; the error that matters is raised
            logger.debug("%r: rollback failed: %r", self, exc)

    # --- DBOSDataSource ---------------------------------------------------------------

    @overload
    @deprecated("async function given to a synchronous datasource: use its async twin")
    def run_transaction(
        self,
        func: Callable[[], Coroutine[Any, Any, R]],
        /,
        *,
        name: str,
        config: ConfigT | None = None,
    ) -> Coroutine[Any, Any, R]: ...

    @overload
    def run_transaction(
        self, func: Callable[[], R], /, *, name: str, config: ConfigT | None = None
    ) -> R: ...

    def run_transaction(
        self, func: Callable[[], Any], /, *, name: str, config: ConfigT | None = None
    ) -> Any:
        """Run ``func`` now as a transaction: a checkpointed step recorded as ``name``
        inside a workflow, a plain (unrecorded) transaction outside one."""
        return run_transaction_on(self, func, name, self._checked(config))

    @overload
    @deprecated("async function given to a synchronous datasource: use its async twin")
    def register_transaction(
        self,
        func: Callable[P, Coroutine[Any, Any, R]],
        /,
        *,
        name: str | None = None,
        config: ConfigT | None = None,
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def register_transaction(
        self, func: Callable[P, R], /, *, name: str | None = None, config: ConfigT | None = None
    ) -> Callable[P, R]: ...

    def register_transaction(
        self,
        func: Callable[P, Any],
        /,
        *,
        name: str | None = None,
        config: ConfigT | None = None,
    ) -> Callable[P, Any]:
        """Return ``func`` wrapped as a transaction of this datasource, with the same
        signature (register before launch). ``name`` is what its steps are recorded as."""
        return make_transaction(self, func, name, self._checked(config))

    def transaction(
        self, config: ConfigT | None = None, *, name: str | None = None
    ) -> "SyncTransactionDecorator":
        """Decorator: ``@ds.transaction()`` or ``@ds.transaction(Config(...), name=...)``."""
        return SyncTransactionDecorator(self, self._checked(config), name)

    def _checked(self, config: ConfigT | None) -> ConfigT | None:
        return None if config is None else self._config_of(config)


class SyncTransactionDecorator:
    """What ``SyncDataSource.transaction(...)`` returns: apply it to a plain function."""

    __slots__ = ("_config", "_ds", "_name")

    def __init__(
        self, ds: SyncDataSource[Any, Any], config: TransactionConfig | None, name: str | None
    ) -> None:
        self._ds = ds
        self._config = config
        self._name = name

    @overload
    @deprecated("async function given to a synchronous datasource: use its async twin")
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...

    def __call__(self, func: Callable[P, Any], /) -> Callable[P, Any]:
        return make_transaction(self._ds, func, self._name, self._config)


class AsyncDataSource(_DataSourceBase[ClientT, ConfigT]):
    """Base of an async datasource: implements ``AsyncDataSourceTransactionHandler[ClientT]``
    and ``AsyncDBOSDataSource[ConfigT]`` on the async hooks below (the twins of
    :class:`SyncDataSource`'s). ``initialize`` and ``destroy`` stay synchronous."""

    @abstractmethod
    def initialize(self) -> None:
        """At launch: connect, and verify (or create) the checkpoint schema."""

    @abstractmethod
    def destroy(self) -> None:
        """At shutdown: close what this datasource opened (not what it was handed)."""

    @abstractmethod
    async def _open_transaction(self, config: ConfigT) -> ClientT:
        """Acquire a connection and begin a transaction configured by ``config``."""

    async def _before_commit(self, client: ClientT) -> None:
        """Called when the function has returned, before its output is encoded for the
        checkpoint: e.g. flush an ORM session, so the output holds generated keys."""
        del client

    @abstractmethod
    async def _commit_transaction(
        self, client: ClientT, checkpoint: TransactionCheckpoint | None
    ) -> bool:
        """Insert ``checkpoint`` (if any) and commit; False (rolled back) on a key conflict."""

    @abstractmethod
    async def _rollback_transaction(self, client: ClientT) -> None:
        """Roll the open transaction back (it may have failed already)."""

    @abstractmethod
    async def _close_transaction(self, client: ClientT) -> None:
        """Release what :meth:`_open_transaction` acquired (always called, once)."""

    @abstractmethod
    async def _read_checkpoint(
        self, workflow_id: str, step_id: int
    ) -> TransactionCheckpoint | None:
        """The committed checkpoint of that step, or None."""

    @abstractmethod
    async def _write_error_checkpoint(self, checkpoint: TransactionCheckpoint) -> bool:
        """Insert ``checkpoint`` in a transaction of its own unless its key exists."""

    # --- AsyncDataSourceTransactionHandler --------------------------------------------

    async def invoke_transaction_function(
        self,
        config: object | None,
        func: Callable[P, Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Await ``func`` in a transaction by the method of operation; return its result
        (or the recorded one)."""
        cfg = self._config_of(config)
        plan = self._plan(cfg, func)
        proto = transaction_protocol(plan)
        reply: Outcome | None = None
        while True:
            try:
                instr = proto.send(reply) if reply is not None else next(proto)
            except StopIteration as stop:
                return cast(R, _settle(stop.value))
            if isinstance(instr, Attempt):
                reply = await self._attempt(cfg, instr.checkpoint_step, func, args, kwargs)
            elif isinstance(instr, Lookup):
                assert plan.step is not None
                step = plan.step
                reply = await _try_async(self._read_checkpoint(step.workflow_id, step.step_id))
            elif isinstance(instr, RecordError):
                reply = await _try_async(self._write_error_checkpoint(instr.checkpoint))
            else:
                assert isinstance(instr, Wait)
                await asyncio.sleep(instr.seconds)
                reply = Outcome()

    async def _attempt(
        self,
        cfg: ConfigT,
        step: TransactionStep | None,
        func: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Outcome:
        try:
            client = await self._open_transaction(cfg)
        except Exception as exc:
            return Outcome(error=exc)
        try:
            token = self._client_var.set(client)
            try:
                value = await func(*args, **kwargs)
            finally:
                self._client_var.reset(token)
            await self._before_commit(client)
            checkpoint = step.encode_output(value) if step is not None else None
            committed = await self._commit_transaction(client, checkpoint)
            return Outcome(value=value if committed else CONFLICT)
        except Exception as exc:
            await self._rollback_quietly(client)
            return Outcome(error=exc)
        except BaseException:
            await self._rollback_quietly(client)
            raise
        finally:
            await self._close_transaction(client)

    async def _rollback_quietly(self, client: ClientT) -> None:
        try:
            await self._rollback_transaction(client)
        except Exception as exc:
            logger.debug("%r: rollback failed: %r", self, exc)

    # --- AsyncDBOSDataSource ----------------------------------------------------------

    async def run_transaction(
        self,
        func: Callable[[], Awaitable[R]],
        /,
        *,
        name: str,
        config: ConfigT | None = None,
    ) -> R:
        """Await ``func`` now as a transaction: a checkpointed step recorded as ``name``
        inside a workflow, a plain (unrecorded) transaction outside one."""
        return await run_transaction_on_async(self, func, name, self._checked(config))

    def register_transaction(
        self,
        func: Callable[P, Coroutine[Any, Any, R]],
        /,
        *,
        name: str | None = None,
        config: ConfigT | None = None,
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """Return the coroutine function ``func`` wrapped as a transaction of this
        datasource, with the same signature (register before launch)."""
        return make_transaction(self, func, name, self._checked(config))

    def transaction(
        self, config: ConfigT | None = None, *, name: str | None = None
    ) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
        """Decorator: ``@ds.transaction()`` or ``@ds.transaction(Config(...), name=...)``
        on an ``async def``."""
        checked = self._checked(config)

        def deco(
            func: Callable[P, Coroutine[Any, Any, R]],
        ) -> Callable[P, Coroutine[Any, Any, R]]:
            return make_transaction(self, func, name, checked)

        return deco

    def _checked(self, config: ConfigT | None) -> ConfigT | None:
        return None if config is None else self._config_of(config)


def _settle(settled: Settled) -> Any:
    """Tell the engine when the outcome is the step's committed checkpoint (the system
    database may then hold its record for the workflow's next write); return or raise it."""
    if settled.checkpointed:
        mark_recorded_elsewhere()
    return settled.outcome.unwrap()


def _try(func: Callable[..., Any], *args: Any) -> Outcome:
    try:
        return Outcome(value=func(*args))
    except Exception as exc:
        return Outcome(error=exc)


async def _try_async(coro: Awaitable[Any]) -> Outcome:
    try:
        return Outcome(value=await coro)
    except Exception as exc:
        return Outcome(error=exc)
