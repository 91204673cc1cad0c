"""The two plugin contracts: what a datasource gives DBOS, and what the app developer sees.

``DataSourceTransactionHandler`` provides a client to user code, so it is covariant in the
client type; ``DBOSDataSource`` consumes a config, so it is contravariant in the config
type (TYPING.md §3). The async twins differ only where a coroutine is awaited.
"""

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from typing_extensions import Protocol, runtime_checkable

P = ParamSpec("P")
R = TypeVar("R")
Client_co = TypeVar("Client_co", covariant=True)
Config_contra = TypeVar("Config_contra", contravariant=True)


@runtime_checkable
class DataSourceTransactionHandler(Protocol[Client_co]):
    """What a (synchronous) datasource gives DBOS at registration.

    Implement it directly, or subclass :class:`dbos_sdk.datasource.SyncDataSource`, which
    implements the method of operation and leaves the database work to a few hooks.
    """

    name: str
    """Unique per process; transactions name their datasource by it."""
    ds_type: str
    """What kind of datasource this is, e.g. ``"psycopg"``, ``"sqlalchemy"``, ``"sqlite"``."""

    def initialize(self) -> None:
        """At launch: connect, and verify (or create) the checkpoint schema; raise a clear
        error naming what to run when it is missing."""
        ...

    def destroy(self) -> None:
        """At shutdown: close the connections this datasource opened."""
        ...

    @property
    def client(self) -> Client_co:
        """The client bound to the transaction in progress; a named error outside one."""
        ...

    def invoke_transaction_function(
        self, config: object | None, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Open a transaction, run ``func`` with the client bound, write the completion
        checkpoint in the same transaction, commit; return what ``func`` returned."""
        ...


@runtime_checkable
class AsyncDataSourceTransactionHandler(Protocol[Client_co]):
    """The async twin of :class:`DataSourceTransactionHandler` (for async clients):
    ``invoke_transaction_function`` is a coroutine that awaits ``func``."""

    name: str
    ds_type: str

    def initialize(self) -> None:
        """At launch (synchronous: run async work on a loop of your own)."""
        ...

    def destroy(self) -> None:
        """At shutdown (synchronous: the runtime's event loop may be closed already)."""
        ...

    @property
    def client(self) -> Client_co:
        """The client bound to the transaction in progress; a named error outside one."""
        ...

    async def invoke_transaction_function(
        self,
        config: object | None,
        func: Callable[P, Awaitable[R]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Open a transaction, await ``func`` with the client bound, write the completion
        checkpoint in the same transaction, commit; return what ``func`` returned."""
        ...


@runtime_checkable
class DBOSDataSource(Protocol[Config_contra]):
    """What the app developer sees of a synchronous datasource: transactions (decorated,
    registered, or run inline), configured per call with the datasource's own config type."""

    name: str

    def run_transaction(
        self, func: Callable[[], R], /, *, name: str, config: Config_contra | None = None
    ) -> R:
        """Run ``func`` as a transaction now (a checkpointed step inside a workflow);
        ``name`` is what the step is recorded as."""
        ...

    def register_transaction(
        self,
        func: Callable[P, R],
        /,
        *,
        name: str | None = None,
        config: Config_contra | None = None,
    ) -> Callable[P, R]:
        """Return ``func`` wrapped as a transaction of this datasource (same signature)."""
        ...

    def transaction(
        self, config: Config_contra | None = None, *, name: str | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator form of :meth:`register_transaction`."""
        ...


@runtime_checkable
class AsyncDBOSDataSource(Protocol[Config_contra]):
    """The async twin of :class:`DBOSDataSource`: transactions are coroutine functions."""

    name: str

    async def run_transaction(
        self,
        func: Callable[[], Awaitable[R]],
        /,
        *,
        name: str,
        config: Config_contra | None = None,
    ) -> R:
        """Await ``func`` as a transaction now (a checkpointed step inside a workflow)."""
        ...

    def register_transaction(
        self,
        func: Callable[P, Coroutine[Any, Any, R]],
        /,
        *,
        name: str | None = None,
        config: Config_contra | None = None,
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """Return the coroutine function ``func`` wrapped as a transaction (same signature)."""
        ...

    def transaction(
        self, config: Config_contra | None = None, *, name: str | None = None
    ) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
        """Decorator form of :meth:`register_transaction`."""
        ...
