"""The async psycopg datasource.

Its pool lives on an event loop of its own (a :class:`BackgroundLoop`): transactions run on
whichever loop awaits them (the application's, the runtime's), and a connection taken from
the pool is used only by the task that took it, so it can serve any loop. ``initialize``
and ``destroy`` are synchronous and run on that loop too.

Reaching the pool's loop costs two thread hops, so connections a transaction is done with
are kept, still checked out, in a small thread-safe stack (at most ``pool_size``) and taken
from there first; they go back to the pool when found broken and at shutdown.
"""

import threading
from collections.abc import AsyncGenerator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from dbos_psycopg_datasource._common import ISOLATION, PsycopgTransactionConfig, describe_url
from dbos_sdk.datasource import (
    AsyncDataSource,
    BackgroundLoop,
    TransactionCheckpoint,
    TransactionRetryPolicy,
    check_pg_schema_name,
    is_pg_retriable_transaction_error,
    pg_commit_with_checkpoint_async,
    pg_ensure_checkpoint_schema_async,
    pg_insert_checkpoint_if_absent_async,
    pg_install_checkpoint_schema,
    pg_read_checkpoint_async,
    register_data_source,
)
from dbos_sdk.errors import (
    DBOSConfigurationError,
    DBOSDatabaseConnectionError,
    DBOSNotLaunchedError,
)

AConn = psycopg.AsyncConnection[TupleRow]


class AsyncPsycopgDataSource(AsyncDataSource[AConn, PsycopgTransactionConfig]):
    """Async transactions on PostgreSQL with psycopg 3; ``client`` is the transaction's
    ``psycopg.AsyncConnection``. Transactions are ``async def`` functions. Registers
    itself on construction (before ``DBOS.launch()``); opens a pool of up to
    ``pool_size`` connections to ``url`` at launch (``pool_kwargs`` go to it) and closes it
    at shutdown. Checkpoints go to ``<schema>.transaction_completion``.

    Do not commit or roll back on ``client``: the datasource ends the transaction.
    """

    schema: str

    def __init__(
        self,
        name: str,
        url: str,
        *,
        schema: str = "dbos",
        pool_size: int = 10,
        retry: TransactionRetryPolicy | None = None,
        create_checkpoint_schema: bool = True,
        connect_timeout_s: float = 10.0,
        pool_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            name, ds_type="psycopg-async", config_type=PsycopgTransactionConfig, retry=retry
        )
        if pool_size < 1:
            raise DBOSConfigurationError(
                f"AsyncPsycopgDataSource({name!r}, pool_size={pool_size}): give >= 1."
            )
        self.schema = check_pg_schema_name(schema)
        self._url = url
        self._pool_size = pool_size
        self._create = create_checkpoint_schema
        self._connect_timeout_s = connect_timeout_s
        self._pool_kwargs = dict(pool_kwargs or {})
        self._loop = BackgroundLoop(f"dbos-ds-{name}")
        self._pool: AsyncConnectionPool[AConn] | None = None
        self._kept: list[AConn] = []
        self._kept_lock = threading.Lock()
        register_data_source(self)

    # --- lifecycle -------------------------------------------------------------------

    def initialize(self) -> None:
        """Open the pool on the datasource's loop; check connectivity and the checkpoint table."""
        try:
            self._pool = self._loop.run(self._open_pool())
        except BaseException:
            self._loop.stop()
            raise

    async def _open_pool(self) -> AsyncConnectionPool[AConn]:
        pool: AsyncConnectionPool[AConn] = AsyncConnectionPool(
            self._url,
            min_size=min(2, self._pool_size),
            max_size=self._pool_size,
            open=False,
            name=f"dbos-ds-{self.name}",
            kwargs={"autocommit": False},
            **self._pool_kwargs,
        )
        try:
            await pool.open(wait=True, timeout=self._connect_timeout_s)
        except PoolTimeout as exc:
            await pool.close()
            raise DBOSDatabaseConnectionError(
                f"{self!r} cannot connect to PostgreSQL at {describe_url(self._url)} within "
                f"{self._connect_timeout_s}s: {exc}. Check the URL and that the server is up."
            ) from exc
        try:
            conn = await pool.getconn()
            try:
                await conn.set_autocommit(True)
                await pg_ensure_checkpoint_schema_async(
                    conn, self.schema, create=self._create, who=repr(self)
                )
                await conn.set_autocommit(False)
            finally:
                await pool.putconn(conn)
        except BaseException:
            await pool.close()
            raise
        return pool

    def destroy(self) -> None:
        """Close the pool and stop the datasource's loop."""
        pool, self._pool = self._pool, None
        with self._kept_lock:
            kept, self._kept = self._kept, []
        if pool is not None:
            self._loop.run(_close(pool, kept))
        self._loop.stop()

    def install_checkpoint_schema(self) -> None:
        """Create the checkpoint schema and table now (idempotent): for deploy scripts and
        tests, as a role allowed to create them."""
        with psycopg.connect(self._url, autocommit=True) as conn:
            pg_install_checkpoint_schema(conn, self.schema)

    # --- hooks ----------------------------------------------------------------------------

    def _require_pool(self) -> AsyncConnectionPool[AConn]:
        if self._pool is None:
            raise DBOSNotLaunchedError(
                f"{self!r} is not open: its transactions run between DBOS.launch() and "
                "DBOS.shutdown()."
            )
        return self._pool

    async def _acquire(self) -> AConn:
        pool = self._require_pool()
        while True:
            with self._kept_lock:
                conn = self._kept.pop() if self._kept else None
            if conn is None:
                return await self._loop.call(pool.getconn())
            if not conn.broken and not conn.closed:
                return conn
            await self._loop.call(pool.putconn(conn))  # the pool discards it

    async def _release(self, conn: AConn) -> None:
        pool = self._require_pool()
        if not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE:
            with self._kept_lock:
                if len(self._kept) < self._pool_size:
                    self._kept.append(conn)
                    return
        await self._loop.call(pool.putconn(conn))

    @asynccontextmanager
    async def _autocommit(self) -> AsyncGenerator[AConn]:
        conn = await self._acquire()
        try:
            await conn.set_autocommit(True)
            yield conn
        finally:
            try:
                if not conn.closed:
                    await conn.set_autocommit(False)
            finally:
                await self._release(conn)

    async def _open_transaction(self, config: PsycopgTransactionConfig) -> AConn:
        conn = await self._acquire()
        try:
            await conn.set_autocommit(False)
            await conn.set_isolation_level(ISOLATION[config.isolation_level])
            await conn.set_read_only(config.read_only)
        except BaseException:
            await self._release(conn)
            raise
        return conn

    async def _commit_transaction(
        self, client: AConn, checkpoint: TransactionCheckpoint | None
    ) -> bool:
        return await pg_commit_with_checkpoint_async(client, self.schema, checkpoint)

    async def _rollback_transaction(self, client: AConn) -> None:
        await client.rollback()

    async def _close_transaction(self, client: AConn) -> None:
        await self._release(client)

    async def _read_checkpoint(
        self, workflow_id: str, step_id: int
    ) -> TransactionCheckpoint | None:
        async with self._autocommit() as conn:
            return await pg_read_checkpoint_async(conn, self.schema, workflow_id, step_id)

    async def _write_error_checkpoint(self, checkpoint: TransactionCheckpoint) -> bool:
        async with self._autocommit() as conn:
            return await pg_insert_checkpoint_if_absent_async(conn, self.schema, checkpoint)

    def is_retriable_error(self, error: BaseException) -> bool:
        """Serialization failure, deadlock and lost connections (see
        :func:`dbos_sdk.datasource.is_pg_retriable_transaction_error`)."""
        return is_pg_retriable_transaction_error(error)


async def _close(pool: AsyncConnectionPool[AConn], kept: list[AConn]) -> None:
    for conn in kept:
        await pool.putconn(conn)
    await pool.close()
