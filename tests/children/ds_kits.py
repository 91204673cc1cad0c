"""The conformance-suite kits of this repository's five datasources (psycopg, async
psycopg, SQLAlchemy Session, AsyncSession, sqlite3), on the real Postgres server and on
real SQLite files. tests/test_datasource_conformance.py runs the suite over each.

The four PostgreSQL kits share everything but how they talk to their client: scratch
space is a fresh schema, the datasource's connections carry an ``application_name`` of
their own so ``pg_stat_activity`` counts them, and settings are read back with
``current_setting``. The module is imported in the suite's crash child too, so it takes
its server URL from the environment, like conftest.py.
"""

import os
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from dbos_psycopg_datasource import (
    AsyncPsycopgDataSource,
    PsycopgDataSource,
    PsycopgTransactionConfig,
)
from dbos_sdk.datasource import (
    PGIsolationLevel,
    TransactionCheckpoint,
    TransactionRetryPolicy,
    get_pg_error_code,
)
from dbos_sdk.testing import (
    AsyncDataSourceKit,
    ConflictCase,
    DataSourceKit,
    KitScratch,
    NotSupported,
    SettingsCase,
    Supported,
)
from dbos_sqlalchemy_datasource import (
    AsyncSQLAlchemyDataSource,
    SQLAlchemyDataSource,
    SQLAlchemyTransactionConfig,
)
from dbos_sqlite_datasource import SQLiteBeginMode, SQLiteDataSource, SQLiteTransactionConfig

PG_URL = os.environ.get("DBOS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
_CHECKPOINT_COLUMNS = "workflow_id, function_num, output, error, serialization"


def _checkpoint(row: Sequence[Any]) -> TransactionCheckpoint:
    return TransactionCheckpoint(
        workflow_id=row[0], step_id=row[1], output=row[2], error=row[3], serialization=row[4]
    )


# --- PostgreSQL -------------------------------------------------------------------------


class _PgKit:
    """What the four PostgreSQL kits share (mixed into a DataSourceKit or AsyncDataSourceKit)."""

    scratch: KitScratch
    config_type: type[PsycopgTransactionConfig] | type[SQLAlchemyTransactionConfig]
    ds_class: type[Any]

    @property
    def schema(self) -> str:
        return self.scratch.token

    def _sql(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            cur = conn.execute(text.format(s=f'"{self.schema}"'), tuple(params))  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def unreachable(self) -> str | None:
        try:
            psycopg.connect(PG_URL, connect_timeout=3).close()
        except psycopg.Error as exc:
            return f"{PG_URL}: {str(exc).strip()}"
        return None

    def create_scratch(self) -> None:
        self._sql("CREATE SCHEMA {s}")
        self._sql("CREATE TABLE {s}.items (v TEXT)")
        self._sql("CREATE TABLE {s}.counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        self._sql("INSERT INTO {s}.counter VALUES (1, 0)")

    def drop_scratch(self) -> None:
        self._sql("DROP SCHEMA IF EXISTS {s} CASCADE")

    def committed_items(self) -> list[str]:
        return sorted(r[0] for r in self._sql("SELECT v FROM {s}.items"))

    def committed_counter(self) -> int:
        return int(self._sql("SELECT n FROM {s}.counter WHERE id = 1")[0][0])

    def committed_checkpoints(self) -> list[TransactionCheckpoint]:
        exists = self._sql("SELECT to_regclass(%s)", (f'"{self.schema}".transaction_completion',))
        if exists[0][0] is None:
            return []
        rows = self._sql(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM {{s}}.transaction_completion "
            "ORDER BY workflow_id, function_num"
        )
        return [_checkpoint(r) for r in rows]

    def _application_name(self, ds_name: str) -> str:
        return re.sub(r"\W", "_", f"{self.schema}_{ds_name}")[:63]

    def make_datasource(
        self,
        name: str,
        *,
        retry: TransactionRetryPolicy | None = None,
        create_checkpoint_schema: bool = True,
    ) -> Any:
        sep = "&" if "?" in PG_URL else "?"
        url = f"{PG_URL}{sep}application_name={self._application_name(name)}"
        return self.ds_class(
            name,
            url,
            schema=self.schema,
            retry=retry,
            create_checkpoint_schema=create_checkpoint_schema,
        )

    def install_checkpoint_schema(self, ds: Any) -> None:
        ds.install_checkpoint_schema()

    def schema_error_mentions(self) -> Sequence[str]:
        return [
            f'"{self.schema}".transaction_completion',
            f"create_transaction_completion_table_pg({self.schema!r})",
            "install_checkpoint_schema()",
        ]

    def open_connections(self, ds: Any) -> int:
        rows = self._sql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (self._application_name(ds.name),),
        )
        return int(rows[0][0])

    def read_only_config(self) -> object:
        return self.config_type(read_only=True)

    def is_read_only_violation(self, error: BaseException) -> bool:
        return get_pg_error_code(error) == "25006"  # read_only_sql_transaction

    def settings_cases(self) -> Sequence[SettingsCase]:
        cases = [SettingsCase(label="default", config=None, expected=("serializable", "off"))]
        for level in PGIsolationLevel:
            for ro in (False, True):
                cases.append(
                    SettingsCase(
                        label=f"{level.value}, read_only={ro}",
                        config=self.config_type(isolation_level=level, read_only=ro),
                        expected=(level.value.lower(), "on" if ro else "off"),
                    )
                )
        return cases

    def conflicting_writes(self) -> ConflictCase:
        # The loser's UPDATE waits for the winner's commit, then fails with 40001 once.
        config = self.config_type(isolation_level=PGIsolationLevel.SERIALIZABLE)
        return ConflictCase(config=config, total_attempts=3)

    def concurrent_write_transactions(self) -> Supported:
        return Supported()

    def connection_loss(self) -> Supported:
        return Supported()

    # The SQL each operation sends (``{s}`` is the schema; %s placeholders).
    INSERT = "INSERT INTO {s}.items (v) VALUES (%s)"
    COUNT = "SELECT count(*) FROM {s}.items"
    READ_COUNTER = "SELECT n FROM {s}.counter WHERE id = 1"
    WRITE_COUNTER = "UPDATE {s}.counter SET n = %s WHERE id = 1"
    RETRIABLE = (
        "DO $$ BEGIN RAISE EXCEPTION 'forced' USING ERRCODE = 'serialization_failure'; END $$"
    )
    SETTINGS = (
        "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')"
    )
    TERMINATE = "SELECT pg_terminate_backend(pg_backend_pid())"


class _SyncPgOps(_PgKit, DataSourceKit[Any]):
    """The operations on a synchronous client, through :meth:`_run`."""

    def _run(self, ds: Any, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def insert_item(self, ds: Any, value: str) -> None:
        self._run(ds, self.INSERT, (value,))

    def count_items(self, ds: Any) -> int:
        return int(self._run(ds, self.COUNT)[0][0])

    def read_counter(self, ds: Any) -> int:
        return int(self._run(ds, self.READ_COUNTER)[0][0])

    def write_counter(self, ds: Any, value: int) -> None:
        self._run(ds, self.WRITE_COUNTER, (value,))

    def raise_retriable_error(self, ds: Any) -> None:
        self._run(ds, self.RETRIABLE)

    def read_settings(self, ds: Any) -> object:
        return self._run(ds, self.SETTINGS)[0]

    def lose_connection(self, ds: Any) -> None:
        self._run(ds, self.TERMINATE)


class _AsyncPgOps(_PgKit, AsyncDataSourceKit[Any]):
    """The operations on an async client, through :meth:`_run`."""

    async def _run(self, ds: Any, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def insert_item(self, ds: Any, value: str) -> None:
        await self._run(ds, self.INSERT, (value,))

    async def count_items(self, ds: Any) -> int:
        return int((await self._run(ds, self.COUNT))[0][0])

    async def read_counter(self, ds: Any) -> int:
        return int((await self._run(ds, self.READ_COUNTER))[0][0])

    async def write_counter(self, ds: Any, value: int) -> None:
        await self._run(ds, self.WRITE_COUNTER, (value,))

    async def raise_retriable_error(self, ds: Any) -> None:
        await self._run(ds, self.RETRIABLE)

    async def read_settings(self, ds: Any) -> object:
        return (await self._run(ds, self.SETTINGS))[0]

    async def lose_connection(self, ds: Any) -> None:
        await self._run(ds, self.TERMINATE)


def _sa_text(text: str, params: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
    counter = iter(range(1000))
    rendered = re.sub(r"%s", lambda _m: f":p{next(counter)}", text)
    return sa.text(rendered), {f"p{i}": v for i, v in enumerate(params)}


class PsycopgKit(_SyncPgOps):
    ds_class = PsycopgDataSource
    config_type = PsycopgTransactionConfig

    def _run(self, ds: Any, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = ds.client.execute(text.format(s=f'"{self.schema}"'), tuple(params))
        return list(cur.fetchall()) if cur.description else []


class AsyncPsycopgKit(_AsyncPgOps):
    ds_class = AsyncPsycopgDataSource
    config_type = PsycopgTransactionConfig

    async def _run(self, ds: Any, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = await ds.client.execute(text.format(s=f'"{self.schema}"'), tuple(params))
        return list(await cur.fetchall()) if cur.description else []


class SQLAlchemyKit(_SyncPgOps):
    ds_class = SQLAlchemyDataSource
    config_type = SQLAlchemyTransactionConfig

    def _run(self, ds: Any, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        stmt, bound = _sa_text(text.format(s=f'"{self.schema}"'), params)
        res = ds.client.execute(stmt, bound)
        return [tuple(r) for r in res] if res.returns_rows else []


class AsyncSQLAlchemyKit(_AsyncPgOps):
    ds_class = AsyncSQLAlchemyDataSource
    config_type = SQLAlchemyTransactionConfig

    async def _run(self, ds: Any, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        stmt, bound = _sa_text(text.format(s=f'"{self.schema}"'), params)
        res = await ds.client.execute(stmt, bound)
        return [tuple(r) for r in res] if res.returns_rows else []


# --- SQLite -----------------------------------------------------------------------------


class SQLiteKit(DataSourceKit[SQLiteDataSource]):
    """sqlite3 on a file in the scratch directory."""

    @property
    def path(self) -> str:
        return str(Path(self.scratch.directory) / f"{self.scratch.token}.sqlite")

    def _sql(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path, timeout=10)
        try:
            rows = conn.execute(text, tuple(params)).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def unreachable(self) -> str | None:
        return None

    def create_scratch(self) -> None:
        self._sql("CREATE TABLE items (v TEXT)")
        self._sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        self._sql("INSERT INTO counter VALUES (1, 0)")

    def drop_scratch(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(self.path + suffix).unlink(missing_ok=True)

    def committed_items(self) -> list[str]:
        return sorted(r[0] for r in self._sql("SELECT v FROM items"))

    def committed_counter(self) -> int:
        return int(self._sql("SELECT n FROM counter WHERE id = 1")[0][0])

    def committed_checkpoints(self) -> list[TransactionCheckpoint]:
        if not self._sql(
            "SELECT name FROM sqlite_master WHERE name = 'dbos_transaction_completion'"
        ):
            return []
        rows = self._sql(
            f"SELECT {_CHECKPOINT_COLUMNS} FROM dbos_transaction_completion "
            "ORDER BY workflow_id, function_num"
        )
        return [_checkpoint(r) for r in rows]

    def make_datasource(
        self,
        name: str,
        *,
        retry: TransactionRetryPolicy | None = None,
        create_checkpoint_schema: bool = True,
    ) -> SQLiteDataSource:
        return SQLiteDataSource(
            name, self.path, retry=retry, create_checkpoint_schema=create_checkpoint_schema
        )

    def install_checkpoint_schema(self, ds: SQLiteDataSource) -> None:
        ds.install_checkpoint_schema()

    def schema_error_mentions(self) -> Sequence[str]:
        return [
            "dbos_transaction_completion",
            "SQLITE_CHECKPOINT_TABLE_SQL",
            "install_checkpoint_schema()",
        ]

    def open_connections(self, ds: SQLiteDataSource) -> int | NotSupported:
        fds = Path("/proc/self/fd")
        if not fds.is_dir():
            return NotSupported(reason="counting open file handles needs /proc/self/fd (Linux)")
        target = os.path.realpath(self.path)
        count = 0
        for fd in fds.iterdir():
            try:
                if os.readlink(fd) == target:
                    count += 1
            except OSError:
                continue  # closed while we looked
        return count

    def read_only_config(self) -> object:
        return SQLiteTransactionConfig(read_only=True)

    def is_read_only_violation(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.OperationalError) and "readonly" in str(error)

    def settings_cases(self) -> Sequence[SettingsCase]:
        # (whether another connection could take the write lock now, PRAGMA query_only)
        return [
            SettingsCase(label="default (IMMEDIATE)", config=None, expected=("held", 0)),
            SettingsCase(
                label="DEFERRED",
                config=SQLiteTransactionConfig(begin_mode=SQLiteBeginMode.DEFERRED),
                expected=("free", 0),
            ),
            SettingsCase(
                label="IMMEDIATE",
                config=SQLiteTransactionConfig(begin_mode=SQLiteBeginMode.IMMEDIATE),
                expected=("held", 0),
            ),
            SettingsCase(
                label="EXCLUSIVE",
                config=SQLiteTransactionConfig(begin_mode=SQLiteBeginMode.EXCLUSIVE),
                expected=("held", 0),
            ),
            SettingsCase(
                label="read-only",
                config=SQLiteTransactionConfig(read_only=True),
                expected=("free", 1),
            ),
        ]

    def conflicting_writes(self) -> ConflictCase:
        # Both DEFERRED transactions read; the one that writes second meets the winner's
        # write lock (SQLITE_BUSY, or SQLITE_BUSY_SNAPSHOT once the winner committed) and
        # is retried, once per busy answer.
        config = SQLiteTransactionConfig(begin_mode=SQLiteBeginMode.DEFERRED)
        return ConflictCase(config=config, total_attempts=None)

    def concurrent_write_transactions(self) -> NotSupported:
        return NotSupported(
            reason="SQLite has one writer at a time: a second write transaction waits for "
            "the first to end"
        )

    def connection_loss(self) -> NotSupported:
        return NotSupported(reason="SQLite is an in-process file: there is no server connection")

    def insert_item(self, ds: SQLiteDataSource, value: str) -> None:
        ds.client.execute("INSERT INTO items (v) VALUES (?)", (value,))

    def count_items(self, ds: SQLiteDataSource) -> int:
        return int(ds.client.execute("SELECT count(*) FROM items").fetchone()[0])

    def read_counter(self, ds: SQLiteDataSource) -> int:
        return int(ds.client.execute("SELECT n FROM counter WHERE id = 1").fetchone()[0])

    def write_counter(self, ds: SQLiteDataSource, value: int) -> None:
        ds.client.execute("UPDATE counter SET n = ? WHERE id = 1", (value,))

    def raise_retriable_error(self, ds: SQLiteDataSource) -> None:
        # The transaction holds the write lock (BEGIN IMMEDIATE, or this write); another
        # connection asking for it gets the real SQLITE_BUSY, which the datasource retries.
        ds.client.execute("INSERT INTO items (v) VALUES ('lock')")
        other = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()

    def read_settings(self, ds: SQLiteDataSource) -> object:
        other = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            lock = "free"
        except sqlite3.OperationalError:
            lock = "held"
        finally:
            other.close()
        return (lock, ds.client.execute("PRAGMA query_only").fetchone()[0])
