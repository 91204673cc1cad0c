"""The Session datasource."""

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from dbos_sdk.datasource import (
    SyncDataSource,
    TransactionCheckpoint,
    TransactionRetryPolicy,
    check_pg_schema_name,
    is_pg_retriable_transaction_error,
    pg_commit_with_checkpoint,
    pg_ensure_checkpoint_schema,
    pg_insert_checkpoint_if_absent,
    pg_install_checkpoint_schema,
    pg_read_checkpoint,
    register_data_source,
)
from dbos_sqlalchemy_datasource._common import (
    DRIVER_CONNECTION,
    EngineSlot,
    SQLAlchemyTransactionConfig,
    TransactionSession,
    begin_with,
    pending_orm_changes,
    raw_connection,
    settings_to_restore,
)

logger = logging.getLogger("dbos_sdk")


class SQLAlchemyDataSource(SyncDataSource[Session, SQLAlchemyTransactionConfig]):
    """Transactions on PostgreSQL with a SQLAlchemy 2 ORM ``Session`` (over psycopg 3);
    ``client`` is the transaction's ``Session``. Registers itself on construction.

    ``url`` is a ``postgresql://`` URL (the datasource creates its engine at launch and
    disposes of it at shutdown; ``engine_kwargs`` go to ``create_engine``) or an ``Engine``
    you own (used, never disposed). Sessions use ``expire_on_commit=False``, so objects a
    transaction returns stay readable. Do not commit or roll back the session yourself.
    """

    schema: str

    def __init__(
        self,
        name: str,
        url: str | Engine,
        *,
        schema: str = "dbos",
        pool_size: int = 10,
        retry: TransactionRetryPolicy | None = None,
        create_checkpoint_schema: bool = True,
        engine_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            name, ds_type="sqlalchemy", config_type=SQLAlchemyTransactionConfig, retry=retry
        )
        self.schema = check_pg_schema_name(schema)
        self._engine = EngineSlot[Engine](name, url, pool_size, engine_kwargs)
        self._create = create_checkpoint_schema
        register_data_source(self)

    @property
    def engine(self) -> Engine:
        """The engine transactions run on (between launch and shutdown)."""
        return self._engine.require(self)

    # --- lifecycle -------------------------------------------------------------------

    def initialize(self) -> None:
        """Create the engine (unless one was given); check connectivity and the checkpoint table."""
        self._engine.open(create_engine)
        try:
            with self._autocommit() as conn:
                pg_ensure_checkpoint_schema(
                    raw_connection(conn.connection.dbapi_connection, self.name),
                    self.schema,
                    create=self._create,
                    who=repr(self),
                )
        except OperationalError as exc:
            self.destroy()
            raise self._engine.connection_error(self, exc) from exc
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        """Dispose of the engine this datasource created (an engine it was given stays)."""
        created = self._engine.close()
        if created is not None:
            created.dispose()

    def install_checkpoint_schema(self) -> None:
        """Create the checkpoint schema and table now (idempotent): for deploy scripts and
        tests, as a role allowed to create them."""
        engine, temporary = self._engine.any_or_temporary(create_engine)
        try:
            with engine.connect() as conn:
                auto = conn.execution_options(isolation_level="AUTOCOMMIT")
                raw = raw_connection(auto.connection.dbapi_connection, self.name)
                pg_install_checkpoint_schema(raw, self.schema)
        finally:
            if temporary:
                engine.dispose()

    # --- hooks ----------------------------------------------------------------------------

    def _autocommit(self) -> Connection:
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _open_transaction(self, config: SQLAlchemyTransactionConfig) -> Session:
        # The session begins on the function's first statement (or flush); the after_begin
        # hook of TransactionSession configures the connection before psycopg sends BEGIN.
        session = TransactionSession(bind=self.engine, expire_on_commit=False)
        begin_with(session, config, self.name, raw_connection)
        return session

    def _before_commit(self, client: Session) -> None:
        # Flush before the output is encoded: the checkpoint then holds generated keys
        # and defaults, as the caller sees them.
        if pending_orm_changes(client):
            client.flush()

    def _commit_transaction(
        self, client: Session, checkpoint: TransactionCheckpoint | None
    ) -> bool:
        if DRIVER_CONNECTION not in client.info:
            client.connection()  # the function ran no statement: begin now
        raw: psycopg.Connection[Any] = client.info[DRIVER_CONNECTION]
        # Checkpoint and COMMIT in one round trip on the driver connection; the session's
        # own commit then finds the transaction over and sends nothing.
        committed = pg_commit_with_checkpoint(raw, self.schema, checkpoint)
        _restore(client, raw)
        if not committed:
            client.rollback()
            return False
        client.commit()
        return True

    def _rollback_transaction(self, client: Session) -> None:
        raw: psycopg.Connection[Any] | None = client.info.get(DRIVER_CONNECTION)
        if raw is not None:
            try:
                raw.rollback()
                _restore(client, raw)
            except psycopg.Error as exc:  # lost: SQLAlchemy's rollback discards it
                logger.debug("%r: rollback on the driver connection failed: %r", self, exc)
        client.rollback()

    def _close_transaction(self, client: Session) -> None:
        client.close()

    def _read_checkpoint(self, workflow_id: str, step_id: int) -> TransactionCheckpoint | None:
        with self._autocommit() as conn:
            raw = raw_connection(conn.connection.dbapi_connection, self.name)
            return pg_read_checkpoint(raw, self.schema, workflow_id, step_id)

    def _write_error_checkpoint(self, checkpoint: TransactionCheckpoint) -> bool:
        with self._autocommit() as conn:
            raw = raw_connection(conn.connection.dbapi_connection, self.name)
            return pg_insert_checkpoint_if_absent(raw, self.schema, checkpoint)

    def is_retriable_error(self, error: BaseException) -> bool:
        """Serialization failure, deadlock and lost connections, also when SQLAlchemy wraps
        them (see :func:`dbos_sdk.datasource.is_pg_retriable_transaction_error`)."""
        return is_pg_retriable_transaction_error(error)


def _restore(client: Session, raw: "psycopg.Connection[Any]") -> None:
    """Put the connection's isolation level and read-only flag back (the transaction has
    ended on it) before the session returns it to the engine's pool."""
    was = settings_to_restore(client)
    if was is None or raw.closed:
        return
    try:
        raw.set_isolation_level(was[0])
        raw.set_read_only(was[1])
    except psycopg.Error:
        # A connection that cannot be reset must not go back to the pool as it is.
        client.invalidate()
