"""PostgreSQL backend: psycopg 3 with a connection pool; many processes may share it.

Single statements run on autocommit connections (one round trip each). Dequeuers of a
queue with a global limit serialize on a transaction-scoped advisory lock, so the limit
holds across processes; otherwise they only skip each other's locked rows.
"""

from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg_pool import ConnectionPool

from dbos_sdk._config import redact_url
from dbos_sdk._sysdb._base import Cursor, Executor, SystemDatabase
from dbos_sdk.errors import DBOSDatabaseConnectionError


class PostgresSystemDatabase(SystemDatabase):
    backend = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    holds_steps = True
    no_limit = "ALL"

    def __init__(self, url: str, *, schema: str = "dbos", pool_size: int = 10) -> None:
        self.url_for_messages = redact_url(url)
        self.schema = schema
        try:
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as exc:
            raise DBOSDatabaseConnectionError(
                f"Cannot connect to the Postgres system database {self.url_for_messages}: "
                f"{' '.join(str(exc).split()).rstrip('.?')}. Check that the server is running "
                "and the URL is right."
            ) from exc
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            open=True,
            name="dbos-system-database",
        )
        # Lazy writes commit asynchronously (see SystemDatabase._lazy_cursor): the server
        # acknowledges the commit before its WAL reaches the disk, saving an fsync wait.
        # The next synchronous commit of any session flushes it; a server crash in the
        # meantime (at most ~3 x wal_writer_delay) loses only what replay recomputes.
        self._lazy_pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            configure=_asynchronous_commit,
            open=True,
            name="dbos-system-database-lazy",
        )
        self._sql_cache: dict[str, str] = {}
        super().__init__()

    def _table_names(self) -> dict[str, str]:
        s = pgsql.Identifier(self.schema).as_string()
        return {
            "ws": f"{s}.workflow_status",
            "ops": f"{s}.operation_outputs",
            "kv": f"{s}.event_dispatch_kv",
            "ver": f"{s}.schema_version",
            "ix": "dbos_",
        }

    def _convert(self, text: str) -> str:
        converted = self._sql_cache.get(text)
        if converted is None:
            converted = text.replace("?", "%s")
            self._sql_cache[text] = converted
        return converted

    def _executor(self, conn: psycopg.Connection[tuple[Any, ...]]) -> Executor:
        def ex(sql: str, params: Sequence[Any] = ()) -> Cursor:
            self._count()
            return conn.execute(self._convert(sql), params)  # pyright: ignore[reportArgumentType]

        return ex

    @contextmanager
    def _cursor(self) -> Generator[Executor, None, None]:
        with self._pool.connection() as conn:
            yield self._executor(conn)

    @contextmanager
    def _lazy_cursor(self) -> Generator[Executor, None, None]:
        with self._lazy_pool.connection() as conn:
            yield self._executor(conn)

    @contextmanager
    def _transaction(self, *, lock_queue: str | None = None) -> Generator[Executor, None, None]:
        with self._pool.connection() as conn:
            self._count(2)  # BEGIN and COMMIT
            with conn.transaction():
                ex = self._executor(conn)
                if lock_queue is not None:
                    ex("SELECT pg_advisory_xact_lock(hashtext(?))", ("dbos.queue:" + lock_queue,))
                yield ex

    def _migrate_locked(self, run: Callable[[Executor], None]) -> None:
        with self._pool.connection() as conn, conn.transaction():
            ex = self._executor(conn)
            ex("SELECT pg_advisory_xact_lock(hashtext(?))", ("dbos.migrate:" + self.schema,))
            ex(
                pgsql.SQL("CREATE SCHEMA IF NOT EXISTS {}")
                .format(pgsql.Identifier(self.schema))
                .as_string()
            )
            run(ex)

    def close(self) -> None:
        self.write_all_held()
        self._lazy_pool.close()
        self._pool.close()


def _asynchronous_commit(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
    conn.execute("SET synchronous_commit = off")
