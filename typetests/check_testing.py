"""Typetests: the datasource conformance kit (dbos_sdk.testing).

A kit is generic in its datasource: its operations get the concrete datasource type, a sync
kit cannot take an async datasource (nor the other way round), a kit missing an operation
cannot be built, and a sync kit's operations cannot be coroutines. Capability answers are
typed records. Checked, never run.
"""

import sqlite3
from collections.abc import Sequence
from typing import assert_type

from dbos_psycopg_datasource import AsyncPsycopgDataSource, PsycopgDataSource
from dbos_sdk.datasource import TransactionCheckpoint, TransactionRetryPolicy
from dbos_sdk.testing import (
    AnyDataSourceKit,
    AsyncDataSourceKit,
    ConflictCase,
    DataSourceConformance,
    DataSourceKit,
    KitFactory,
    KitScratch,
    NotSupported,
    SettingsCase,
    Supported,
)
from dbos_sqlite_datasource import SQLiteDataSource, SQLiteTransactionConfig


class LiteKit(DataSourceKit[SQLiteDataSource]):
    """A complete sync kit: every abstract member implemented."""

    def unreachable(self) -> str | None:
        return None

    def create_scratch(self) -> None: ...

    def drop_scratch(self) -> None: ...

    def committed_items(self) -> list[str]:
        return []

    def committed_counter(self) -> int:
        return 0

    def committed_checkpoints(self) -> list[TransactionCheckpoint]:
        return []

    def make_datasource(
        self,
        name: str,
        *,
        retry: TransactionRetryPolicy | None = None,
        create_checkpoint_schema: bool = True,
    ) -> SQLiteDataSource:
        return SQLiteDataSource(name, f"{self.scratch.directory}/app.sqlite", retry=retry)

    def install_checkpoint_schema(self, ds: SQLiteDataSource) -> None:
        ds.install_checkpoint_schema()

    def schema_error_mentions(self) -> Sequence[str]:
        return ["dbos_transaction_completion"]

    def open_connections(self, ds: SQLiteDataSource) -> int | NotSupported:
        return NotSupported(reason="not counted here")

    def read_only_config(self) -> object:
        return SQLiteTransactionConfig(read_only=True)

    def is_read_only_violation(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.OperationalError)

    def settings_cases(self) -> Sequence[SettingsCase] | NotSupported:
        return [SettingsCase(label="default", config=None, expected=0)]

    def conflicting_writes(self) -> ConflictCase | NotSupported:
        return ConflictCase(config=None)

    def concurrent_write_transactions(self) -> Supported | NotSupported:
        return NotSupported(reason="one writer at a time")

    def connection_loss(self) -> Supported | NotSupported:
        return NotSupported(reason="no server")

    def insert_item(self, ds: SQLiteDataSource, value: str) -> None:
        assert_type(ds.client, sqlite3.Connection)  # the concrete datasource, so its client
        ds.client.execute("INSERT INTO items VALUES (?)", (value,))

    def count_items(self, ds: SQLiteDataSource) -> int:
        return 0

    def read_counter(self, ds: SQLiteDataSource) -> int:
        return 0

    def write_counter(self, ds: SQLiteDataSource, value: int) -> None: ...

    def raise_retriable_error(self, ds: SQLiteDataSource) -> None:
        raise sqlite3.OperationalError("database is locked")


scratch = KitScratch(directory="/tmp/x", token="k1")
kit = LiteKit(scratch)
assert_type(kit.make_datasource("lite"), SQLiteDataSource)
assert_type(kit.scratch, KitScratch)
assert_type(kit.settings_cases(), Sequence[SettingsCase] | NotSupported)
factory: KitFactory = LiteKit  # a kit class is a kit factory
any_kit: AnyDataSourceKit = factory(scratch)
kit.insert_item(PsycopgDataSource("pg", "postgresql://x/y"), "v")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


class TestLite(DataSourceConformance):
    kit_factory = "typetests.check_testing:LiteKit"


class TestWrongFactory(DataSourceConformance):
    kit_factory = LiteKit  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


# --- what is not a kit ---------------------------------------------------------------------


class AsyncDataSourceInASyncKit(DataSourceKit[AsyncPsycopgDataSource]):  # type: ignore[type-var]  # pyright: ignore[reportInvalidTypeArguments]
    """A sync kit takes only a synchronous datasource."""


class SyncDataSourceInAnAsyncKit(AsyncDataSourceKit[PsycopgDataSource]):  # type: ignore[type-var]  # pyright: ignore[reportInvalidTypeArguments]
    """An async kit takes only an async datasource."""


class CoroutineOps(LiteKit):
    async def insert_item(self, ds: SQLiteDataSource, value: str) -> None:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        """A sync kit's operation cannot be a coroutine."""


class MissingOperation(DataSourceKit[SQLiteDataSource]):
    """Implements nothing: it cannot be built."""


MissingOperation(scratch)  # type: ignore[abstract]  # pyright: ignore[reportAbstractUsage]
NotSupported(reason=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
NotSupported("positional")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
ConflictCase(config=None, total_attempts="3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
