"""The AsyncSession datasource.

Sessions run on whichever event loop awaits the transaction. ``initialize`` and
``destroy`` are synchronous and run on a :class:`BackgroundLoop` of the datasource (the
runtime's loop is closed by the time datasources are destroyed).
"""

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

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
    pg_install_checkpoint_schema_async,
    pg_read_checkpoint_async,
    register_data_source,
)
from dbos_sqlalchemy_datasource._common import (
    DRIVER_CONNECTION,
    EngineSlot,
    SQLAlchemyTransactionConfig,
    TransactionSession,
    begin_with,
    driver_of_async,
    pending_orm_changes,
    raw_async_connection,
    settings_to_restore,
)

logger = logging.getLogger("dbos_sdk")


class AsyncSQLAlchemyDataSource(AsyncDataSource[AsyncSession, SQLAlchemyTransactionConfig]):
    """Async transactions on PostgreSQL with a SQLAlchemy 2 ``AsyncSession`` (over
    psycopg 3); ``client`` is the transaction's ``AsyncSession``; transactions are
    ``async def`` functions. Registers itself on construction.

    ``url`` is a ``postgresql://`` URL (the datasource creates its async engine at launch
    and disposes of it at shutdown) or an ``AsyncEngine`` you own (used, never disposed).
    One async engine's pool should not be shared by event loops that contend for it: keep
    ``pool_size`` above the concurrency, or pass an engine with ``poolclass=NullPool``.
    """

    schema: str

    def __init__(
        self,
        name: str,
        url: str | AsyncEngine,
        *,
        schema: str = "dbos",
        pool_size: int = 10,
        retry: TransactionRetryPolicy | None = None,
        create_checkpoint_schema: bool = True,
        engine_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            name,
            ds_type="sqlalchemy-async",
            config_type=SQLAlchemyTransactionConfig,
            retry=retry,
        )
        self.schema = check_pg_schema_name(schema)
        self._engine = EngineSlot[AsyncEngine](name, url, pool_size, engine_kwargs)
        self._create = create_checkpoint_schema
        self._loop = BackgroundLoop(f"dbos-ds-{name}")
        register_data_source(self)

    @property
    def engine(self) -> AsyncEngine:
        """The async engine transactions run on (between launch and shutdown)."""
        return self._engine.require(self)

    # --- lifecycle -------------------------------------------------------------------

    def initialize(self) -> None:
        """Create the engine (unless one was given); check connectivity and the checkpoint table."""
        self._engine.open(create_async_engine)
        try:
            self._loop.run(self._check_schema())
        except OperationalError as exc:
            self.destroy()
            raise self._engine.connection_error(self, exc) from exc
        except BaseException:
            self.destroy()
            raise

    async def _check_schema(self) -> None:
        async with self.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            raw = driver_of_async(auto, self.name)
            await pg_ensure_checkpoint_schema_async(
                raw, self.schema, create=self._create, who=repr(self)
            )

    def destroy(self) -> None:
        """Dispose of the engine this datasource created (an engine it was given stays)."""
        created = self._engine.close()
        if created is not None:
            self._loop.run(created.dispose())
        self._loop.stop()

    def install_checkpoint_schema(self) -> None:
        """Create the checkpoint schema and table now (idempotent): for deploy scripts and
        tests, as a role allowed to create them."""

        async def install() -> None:
            engine, temporary = self._engine.any_or_temporary(create_async_engine)
            try:
                async with engine.connect() as conn:
                    auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    raw = driver_of_async(auto, self.name)
                    await pg_install_checkpoint_schema_async(raw, self.schema)
            finally:
                if temporary:
                    await engine.dispose()

        self._loop.run(install())
        if self._engine.current is None:
            self._loop.stop()

    # --- hooks ----------------------------------------------------------------------------

    async def _open_transaction(self, config: SQLAlchemyTransactionConfig) -> AsyncSession:
        # Nothing crosses the greenlet bridge here: the session begins on the function's
        # first statement (or flush), in that statement's own trip, and the after_begin
        # hook of TransactionSession configures the connection before psycopg sends BEGIN.
        session = AsyncSession(
            bind=self.engine, expire_on_commit=False, sync_session_class=TransactionSession
        )
        begin_with(session.sync_session, config, self.name, raw_async_connection)
        return session

    async def _before_commit(self, client: AsyncSession) -> None:
        # Flush before the output is encoded: the checkpoint then holds generated keys
        # and defaults, as the caller sees them.
        if pending_orm_changes(client.sync_session):
            await client.flush()

    async def _commit_transaction(
        self, client: AsyncSession, checkpoint: TransactionCheckpoint | None
    ) -> bool:
        if DRIVER_CONNECTION not in client.info:
            await client.connection()  # the function ran no statement: begin now
        raw: psycopg.AsyncConnection[Any] = client.info[DRIVER_CONNECTION]
        # Checkpoint and COMMIT in one round trip on the driver connection; the session's
        # own commit then finds the transaction over and sends nothing.
        committed = await pg_commit_with_checkpoint_async(raw, self.schema, checkpoint)
        await _restore(client, raw)
        if not committed:
            await client.rollback()
            return False
        await client.commit()
        return True

    async def _rollback_transaction(self, client: AsyncSession) -> None:
        raw: psycopg.AsyncConnection[Any] | None = client.info.get(DRIVER_CONNECTION)
        if raw is not None:
            try:
                await raw.rollback()
                await _restore(client, raw)
            except psycopg.Error as exc:  # lost: SQLAlchemy's rollback discards it
                logger.debug("%r: rollback on the driver connection failed: %r", self, exc)
        await client.rollback()

    async def _close_transaction(self, client: AsyncSession) -> None:
        session = client.sync_session
        if session.in_transaction():
            await client.close()  # gives the connection back: may await the driver
        else:
            # Committed or rolled back: the connection is back in the pool, and closing
            # only detaches the objects, which needs no trip through the greenlet bridge.
            session.close()

    async def _read_checkpoint(
        self, workflow_id: str, step_id: int
    ) -> TransactionCheckpoint | None:
        async with self.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            raw = driver_of_async(auto, self.name)
            return await pg_read_checkpoint_async(raw, self.schema, workflow_id, step_id)

    async def _write_error_checkpoint(self, checkpoint: TransactionCheckpoint) -> bool:
        async with self.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            raw = driver_of_async(auto, self.name)
            return await pg_insert_checkpoint_if_absent_async(raw, self.schema, checkpoint)

    def is_retriable_error(self, error: BaseException) -> bool:
        """Serialization failure, deadlock and lost connections, also when SQLAlchemy wraps
        them (see :func:`dbos_sdk.datasource.is_pg_retriable_transaction_error`)."""
        return is_pg_retriable_transaction_error(error)


async def _restore(client: AsyncSession, raw: "psycopg.AsyncConnection[Any]") -> None:
    """Put the connection's isolation level and read-only flag back (the transaction has
    ended on it) before the session returns it to the engine's pool."""
    was = settings_to_restore(client.sync_session)
    if was is None or raw.closed:
        return
    try:
        await raw.set_isolation_level(was[0])
        await raw.set_read_only(was[1])
    except psycopg.Error:
        # A connection that cannot be reset must not go back to the pool as it is.
        await client.invalidate()
