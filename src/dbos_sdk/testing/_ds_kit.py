"""What a datasource author implements so the conformance suite can drive their datasource.

A *kit* knows three things the suite cannot: how to make the datasource on a real server,
how to look at that server from outside DBOS (what committed, which checkpoints exist),
and a handful of database operations to run inside a transaction (insert a row, read the
applied settings, provoke a retriable error). Everything else -- workflows, crashes,
duplicate executions, the assertions -- is the suite's.

Capabilities a datasource may lack are declared, not skipped: those methods return either
what the check needs or :class:`NotSupported` with the reason, and the suite reports the
check as skipped with that reason.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import attrs

from dbos_sdk._datasource._protocols import (
    AsyncDataSourceTransactionHandler,
    DataSourceTransactionHandler,
)
from dbos_sdk._datasource._records import TransactionCheckpoint, TransactionRetryPolicy

DS = TypeVar("DS", bound=DataSourceTransactionHandler[Any])
ADS = TypeVar("ADS", bound=AsyncDataSourceTransactionHandler[Any])
H = TypeVar("H")


@attrs.frozen(kw_only=True)
class NotSupported:
    """A kit's explicit answer "this datasource does not do that", and why. The check that
    needs the capability is reported as skipped with this reason."""

    reason: str


@attrs.frozen(kw_only=True)
class KitScratch:
    """Where one check keeps its data: a fresh temporary directory (for files) and a unique
    token (letters and digits, starting with a letter; for schema, database or table
    names). The suite gives the same scratch to the kit in a child process, so a kit built
    from it must reach the same data."""

    directory: str
    token: str


@attrs.frozen(kw_only=True)
class Supported:
    """A capability the datasource has; ``config`` is the transaction config the check
    runs its transactions with (None: the datasource's default)."""

    config: object | None = None


@attrs.frozen(kw_only=True)
class SettingsCase:
    """One transaction setting (isolation level, read-only, begin mode...): a transaction
    run with ``config`` (None: the default) must see ``expected`` when it calls the kit's
    ``read_settings`` inside."""

    label: str
    config: object | None
    expected: object


@attrs.frozen(kw_only=True)
class ConflictCase:
    """How two concurrent read-then-write transactions on one row conflict on this
    datasource: run with ``config``, one of them fails with a retriable error and is
    retried. ``total_attempts``, when known, is exactly how many times the two bodies run
    in all (e.g. 3: each once, the loser once more); None means at least 3."""

    config: object | None
    total_attempts: int | None = None


class _KitBase(ABC, Generic[H]):
    """What the sync and async kits share: the server, the scratch space, the datasource's
    lifecycle, and the declared capabilities."""

    scratch: KitScratch
    """Where this kit's data lives (see :class:`KitScratch`)."""

    def __init__(self, scratch: KitScratch) -> None:
        self.scratch = scratch

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.scratch.token})"

    # --- the server and the scratch space, seen from outside DBOS --------------------------

    @abstractmethod
    def unreachable(self) -> str | None:
        """None when the database server answers; otherwise why it does not (the suite then
        skips every check loudly, or fails them when ``CI`` is set or pytest runs with
        ``--dbos-require-servers``). A file database returns None."""

    @abstractmethod
    def create_scratch(self) -> None:
        """Create the check's data space, named after ``scratch``, holding two tables and
        nothing else (in particular no checkpoint table): ``items`` with one text column,
        and ``counter`` with one row whose integer is 0."""

    @abstractmethod
    def drop_scratch(self) -> None:
        """Remove what :meth:`create_scratch` and the datasource made (after shutdown)."""

    @abstractmethod
    def committed_items(self) -> list[str]:
        """The values committed to ``items``, read on a connection of the kit's own."""

    @abstractmethod
    def committed_counter(self) -> int:
        """The committed value of ``counter``."""

    @abstractmethod
    def committed_checkpoints(self) -> list[TransactionCheckpoint]:
        """Every row of the datasource's completion table in the scratch space, ordered by
        workflow ID and step number (empty if the table does not exist yet)."""

    # --- the datasource --------------------------------------------------------------------

    @abstractmethod
    def make_datasource(
        self,
        name: str,
        *,
        retry: TransactionRetryPolicy | None = None,
        create_checkpoint_schema: bool = True,
    ) -> H:
        """Construct (and so register) a datasource named ``name`` on the scratch space,
        with that retry bound (None: the datasource's default), which creates its
        checkpoint table at launch only when ``create_checkpoint_schema``."""

    @abstractmethod
    def install_checkpoint_schema(self, ds: H) -> None:
        """Create ``ds``'s checkpoint table now, as a deploy script would."""

    @abstractmethod
    def schema_error_mentions(self) -> Sequence[str]:
        """What the error raised at launch when the checkpoint table is missing must name:
        the table, and how to create it."""

    @abstractmethod
    def open_connections(self, ds: H) -> int | NotSupported:
        """How many connections (or file handles) to the database ``ds`` holds open now,
        counted from outside the datasource (e.g. the server's session list)."""

    @abstractmethod
    def read_only_config(self) -> object:
        """A config that makes a transaction read-only."""

    @abstractmethod
    def is_read_only_violation(self, error: BaseException) -> bool:
        """Whether ``error`` is the database rejecting a write in a read-only transaction."""

    # --- capabilities --------------------------------------------------------------------

    @abstractmethod
    def settings_cases(self) -> Sequence[SettingsCase] | NotSupported:
        """The transaction settings (isolation levels, read-only, ...) to check, each with
        what ``read_settings`` sees under it; include the default (config None)."""

    @abstractmethod
    def conflicting_writes(self) -> ConflictCase | NotSupported:
        """How two concurrent read-then-write transactions on one row conflict (retried)."""

    @abstractmethod
    def concurrent_write_transactions(self) -> Supported | NotSupported:
        """Whether a second write transaction can run to its commit while a first one is
        open and has written (not so on a database with one writer at a time)."""

    @abstractmethod
    def connection_loss(self) -> Supported | NotSupported:
        """Whether ``lose_connection`` can break the transaction's connection."""


class DataSourceKit(_KitBase[DS]):
    """The kit of a synchronous datasource (one whose transactions are plain functions).

    Subclass it with your datasource as ``DS``; the database operations below run inside a
    transaction of ``ds`` and use ``ds.client``, as user code does. The class (or any
    function taking a :class:`KitScratch`) is the *kit factory* named by
    ``DataSourceConformance.kit_factory``; building a kit must not touch the database
    (the suite asks :meth:`unreachable` first).
    """

    @abstractmethod
    def insert_item(self, ds: DS, value: str) -> None:
        """Insert ``value`` into ``items``."""

    @abstractmethod
    def count_items(self, ds: DS) -> int:
        """The number of rows in ``items``."""

    @abstractmethod
    def read_counter(self, ds: DS) -> int:
        """Read the counter's value (a plain read: no lock beyond what the config takes)."""

    @abstractmethod
    def write_counter(self, ds: DS, value: int) -> None:
        """Set the counter to ``value``."""

    @abstractmethod
    def raise_retriable_error(self, ds: DS) -> None:
        """Raise the error this datasource classifies as retriable, as the database or
        driver produces it (e.g. a statement that fails with a serialization failure)."""

    def read_settings(self, ds: DS) -> object:
        """What the transaction in progress runs with, read back from the database; compared
        with :attr:`SettingsCase.expected`. Needed unless ``settings_cases`` is
        :class:`NotSupported`."""
        raise NotImplementedError(f"{type(self).__name__}.read_settings")

    def lose_connection(self, ds: DS) -> None:
        """Break the connection of the transaction in progress (e.g. the server ends its
        session). Needed unless ``connection_loss`` is :class:`NotSupported`."""
        raise NotImplementedError(f"{type(self).__name__}.lose_connection")


class AsyncDataSourceKit(_KitBase[ADS]):
    """The kit of an async datasource: the same as :class:`DataSourceKit`, with the
    database operations as coroutines."""

    @abstractmethod
    async def insert_item(self, ds: ADS, value: str) -> None:
        """Insert ``value`` into ``items``."""

    @abstractmethod
    async def count_items(self, ds: ADS) -> int:
        """The number of rows in ``items``."""

    @abstractmethod
    async def read_counter(self, ds: ADS) -> int:
        """Read the counter's value."""

    @abstractmethod
    async def write_counter(self, ds: ADS, value: int) -> None:
        """Set the counter to ``value``."""

    @abstractmethod
    async def raise_retriable_error(self, ds: ADS) -> None:
        """Raise the error this datasource classifies as retriable, as the database produces it."""

    async def read_settings(self, ds: ADS) -> object:
        """What the transaction in progress runs with (see :meth:`DataSourceKit.read_settings`)."""
        raise NotImplementedError(f"{type(self).__name__}.read_settings")

    async def lose_connection(self, ds: ADS) -> None:
        """Break the connection of the transaction in progress."""
        raise NotImplementedError(f"{type(self).__name__}.lose_connection")


AnyDataSourceKit = DataSourceKit[Any] | AsyncDataSourceKit[Any]
"""A kit of either kind."""

KitFactory = Callable[[KitScratch], AnyDataSourceKit]
"""What ``DataSourceConformance.kit_factory`` names: builds a kit on a scratch space."""
