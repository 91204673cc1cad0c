"""SQLite backend: one file, WAL journal, one process.

One connection serves every thread behind a lock: SQLite allows one writer at a time
anyway, and a shared connection avoids re-opening the file. ``synchronous=NORMAL`` in WAL
mode keeps every commit across a crash of the process (only a power loss can drop the
last commits), which is what checkpoints need here.
"""

import sqlite3
import threading
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dbos_sdk._sysdb._base import Cursor, Executor, SystemDatabase
from dbos_sdk.errors import DBOSDatabaseConnectionError


class SQLiteSystemDatabase(SystemDatabase):
    backend = "sqlite"

    def __init__(self, path: str) -> None:
        self.url_for_messages = f"sqlite:///{path}"
        self.path = path
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise DBOSDatabaseConnectionError(
                f"Cannot open the SQLite system database {self.url_for_messages}: {exc}. "
                "Check that the directory exists and is writable."
            ) from exc
        self._lock = threading.RLock()
        super().__init__()

    def _table_names(self) -> dict[str, str]:
        return {
            "ws": "dbos_workflow_status",
            "ops": "dbos_operation_outputs",
            "kv": "dbos_event_dispatch_kv",
            "ver": "dbos_schema_version",
            "ix": "dbos_",
        }

    def _executor(self) -> Executor:
        conn = self._conn

        def ex(sql: str, params: Sequence[Any] = ()) -> Cursor:
            self._count()
            return conn.execute(sql, params)

        return ex

    @contextmanager
    def _cursor(self) -> Generator[Executor, None, None]:
        with self._lock:
            yield self._executor()

    @contextmanager
    def _transaction(self, *, lock_queue: str | None = None) -> Generator[Executor, None, None]:
        # One connection and one process: the lock already serializes dequeuers.
        with self._lock:
            self._count()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._executor()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._count()
            self._conn.execute("COMMIT")

    def _migrate_locked(self, run: Callable[[Executor], None]) -> None:
        with self._transaction() as ex:
            run(ex)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
