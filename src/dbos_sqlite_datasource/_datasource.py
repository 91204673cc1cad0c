"""The sqlite3 datasource: its config, its completion table and its connections."""

import enum
import os
import sqlite3
import threading
from typing import Any

import attrs

from dbos_sdk.datasource import (
    SyncDataSource,
    TransactionCheckpoint,
    TransactionConfig,
    TransactionRetryPolicy,
    register_data_source,
)
from dbos_sdk.errors import (
    DBOSCheckpointSchemaError,
    DBOSConfigurationError,
    DBOSDatabaseConnectionError,
    DBOSNotLaunchedError,
)

SQLITE_CHECKPOINT_TABLE = "dbos_transaction_completion"
SQLITE_CHECKPOINT_TABLE_SQL = f"""CREATE TABLE IF NOT EXISTS {SQLITE_CHECKPOINT_TABLE} (
    workflow_id TEXT NOT NULL,
    function_num INTEGER NOT NULL,
    output TEXT,
    error TEXT,
    serialization TEXT NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    PRIMARY KEY (workflow_id, function_num)
)"""
"""The SQL that creates the completion table in the application's SQLite file."""

_COLUMNS = "workflow_id, function_num, output, error, serialization"
_INSERT = f"INSERT INTO {SQLITE_CHECKPOINT_TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
_INSERT_IF_ABSENT = _INSERT + " ON CONFLICT (workflow_id, function_num) DO NOTHING"
_SELECT = (
    f"SELECT {_COLUMNS} FROM {SQLITE_CHECKPOINT_TABLE} WHERE workflow_id = ? AND function_num = ?"
)
_VERIFY = f"SELECT {_COLUMNS} FROM {SQLITE_CHECKPOINT_TABLE} WHERE 0"
_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)


class SQLiteBeginMode(enum.StrEnum):
    """How a SQLite transaction begins. SQLite transactions are always serializable; the
    mode decides when the write lock is taken."""

    DEFERRED = "DEFERRED"
    """At the first write: concurrent writers can then fail with SQLITE_BUSY (retried)."""
    IMMEDIATE = "IMMEDIATE"
    """At BEGIN: writers queue on the busy timeout instead of failing."""
    EXCLUSIVE = "EXCLUSIVE"
    """At BEGIN, keeping readers out too (in WAL mode, the same as IMMEDIATE)."""


def _check_mode(inst: object, attr: Any, value: object) -> None:
    if not isinstance(value, SQLiteBeginMode):
        choices = ", ".join(f"SQLiteBeginMode.{m.name}" for m in SQLiteBeginMode)
        raise DBOSConfigurationError(
            f"{type(inst).__name__}({attr.name}={value!r}): use one of {choices}."
        )


@attrs.frozen(kw_only=True)
class SQLiteTransactionConfig(TransactionConfig):
    """Per-call config of a SQLite transaction: ``begin_mode`` (default IMMEDIATE) and
    ``read_only`` (``PRAGMA query_only`` for the transaction; no checkpoint written)."""

    begin_mode: SQLiteBeginMode = attrs.field(
        default=SQLiteBeginMode.IMMEDIATE, validator=_check_mode
    )


class _Connection(sqlite3.Connection):
    """A connection that remembers whether it was made read-only for its transaction."""

    query_only: bool = False


class SQLiteDataSource(SyncDataSource[sqlite3.Connection, SQLiteTransactionConfig]):
    """Transactions on a SQLite file with the stdlib ``sqlite3``; ``client`` is the
    transaction's ``sqlite3.Connection``. Registers itself on construction.

    The datasource opens its connections (up to ``pool_size`` kept idle) at launch and
    closes them at shutdown. They wait up to ``busy_timeout_s`` for another writer's lock;
    a transaction that still finds the file busy is retried. With ``wal`` (the default)
    the file is switched to WAL mode, so readers never block the writer. Checkpoints go to
    the ``dbos_transaction_completion`` table of the same file, created at launch unless
    ``create_checkpoint_schema=False``. Do not commit or roll back on ``client``.
    """

    path: str

    def __init__(
        self,
        name: str,
        path: str | os.PathLike[str],
        *,
        busy_timeout_s: float = 5.0,
        pool_size: int = 8,
        wal: bool = True,
        retry: TransactionRetryPolicy | None = None,
        create_checkpoint_schema: bool = True,
    ) -> None:
        super().__init__(name, ds_type="sqlite", config_type=SQLiteTransactionConfig, retry=retry)
        if busy_timeout_s < 0 or pool_size < 1:
            raise DBOSConfigurationError(
                f"SQLiteDataSource({name!r}): busy_timeout_s must be >= 0 and pool_size >= 1."
            )
        self.path = os.fspath(path)
        self._busy_timeout_s = busy_timeout_s
        self._pool_size = pool_size
        self._wal = wal
        self._create = create_checkpoint_schema
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._open = False
        register_data_source(self)

    # --- lifecycle -------------------------------------------------------------------

    def initialize(self) -> None:
        """Open a first connection, switch to WAL, and check (or create) the checkpoint table."""
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise DBOSDatabaseConnectionError(
                f"{self!r} cannot open the SQLite file {self.path!r}: {exc}. Check that its "
                "directory exists and is writable."
            ) from exc
        try:
            self._ensure_schema(conn)
            if self._wal:
                conn.execute("PRAGMA journal_mode = WAL")
        except BaseException:
            conn.close()
            raise
        with self._lock:
            self._idle.append(conn)
            self._open = True

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute(_VERIFY)
            return
        except sqlite3.OperationalError as missing:
            problem = str(missing)
        if self._create:
            try:
                conn.execute(SQLITE_CHECKPOINT_TABLE_SQL)
                return
            except sqlite3.Error as exc:
                problem = f"{problem}, and creating it failed: {exc}"
        else:
            problem = f"{problem} (creating it is turned off)"
        raise DBOSCheckpointSchemaError(
            f"Datasource {self!r} cannot use its transaction-completion table "
            f"{SQLITE_CHECKPOINT_TABLE} in {self.path!r}: {problem}. Create it once: call "
            "install_checkpoint_schema() on the datasource, or run "
            "dbos_sqlite_datasource.SQLITE_CHECKPOINT_TABLE_SQL on that file."
        )

    def destroy(self) -> None:
        """Close every connection this datasource opened."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._open = False
        for conn in idle:
            conn.close()

    def install_checkpoint_schema(self) -> None:
        """Create the checkpoint table now (idempotent), for deploy scripts and tests."""
        conn = self._connect()
        try:
            conn.execute(SQLITE_CHECKPOINT_TABLE_SQL)
        finally:
            conn.close()

    # --- connections ------------------------------------------------------------------

    def _connect(self) -> _Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,  # we send BEGIN and COMMIT ourselves
            check_same_thread=False,  # a pooled connection serves one thread at a time
            factory=_Connection,
        )
        if self._wal:
            conn.execute("PRAGMA synchronous = NORMAL")  # durable against process crashes
        return conn

    def _take(self) -> _Connection:
        with self._lock:
            if not self._open:
                raise DBOSNotLaunchedError(
                    f"{self!r} is not open: its transactions run between DBOS.launch() and "
                    "DBOS.shutdown()."
                )
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _give_back(self, conn: _Connection) -> None:
        with self._lock:
            if self._open and len(self._idle) < self._pool_size:
                self._idle.append(conn)
                return
        conn.close()

    # --- hooks ----------------------------------------------------------------------------

    def _open_transaction(self, config: SQLiteTransactionConfig) -> sqlite3.Connection:
        conn = self._take()
        try:
            if config.read_only:
                conn.execute("PRAGMA query_only = ON")
                conn.query_only = True
                conn.execute("BEGIN DEFERRED")
            else:
                conn.execute(f"BEGIN {config.begin_mode.value}")
        except BaseException:
            self._release(conn)
            raise
        return conn

    def _commit_transaction(
        self, client: sqlite3.Connection, checkpoint: TransactionCheckpoint | None
    ) -> bool:
        if checkpoint is not None:
            try:
                client.execute(_INSERT, _params(checkpoint))
            except sqlite3.IntegrityError:  # the checkpoint's key exists: another run won
                client.execute("ROLLBACK")
                return False
        client.execute("COMMIT")
        return True

    def _rollback_transaction(self, client: sqlite3.Connection) -> None:
        if client.in_transaction:
            client.execute("ROLLBACK")

    def _close_transaction(self, client: sqlite3.Connection) -> None:
        assert isinstance(client, _Connection)
        self._release(client)

    def _release(self, conn: _Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if conn.query_only:
                conn.execute("PRAGMA query_only = OFF")
                conn.query_only = False
        except sqlite3.Error:
            conn.close()
            return
        self._give_back(conn)

    def _read_checkpoint(self, workflow_id: str, step_id: int) -> TransactionCheckpoint | None:
        conn = self._take()
        try:
            row = conn.execute(_SELECT, (workflow_id, step_id)).fetchone()
        finally:
            self._release(conn)
        if row is None:
            return None
        return TransactionCheckpoint(
            workflow_id=row[0], step_id=row[1], output=row[2], error=row[3], serialization=row[4]
        )

    def _write_error_checkpoint(self, checkpoint: TransactionCheckpoint) -> bool:
        conn = self._take()
        try:
            return conn.execute(_INSERT_IF_ABSENT, _params(checkpoint)).rowcount == 1
        finally:
            self._release(conn)

    def is_retriable_error(self, error: BaseException) -> bool:
        """SQLITE_BUSY and SQLITE_LOCKED (another connection holds the lock past the busy
        timeout, or a deferred transaction's snapshot went stale), in the cause chain too."""
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            if isinstance(current, sqlite3.OperationalError):
                code = getattr(current, "sqlite_errorcode", None)
                if isinstance(code, int) and code & 0xFF in _BUSY_CODES:
                    return True
            current = current.__cause__
        return False


def _params(cp: TransactionCheckpoint) -> tuple[object, ...]:
    return (cp.workflow_id, cp.step_id, cp.output, cp.error, cp.serialization)
