"""The synchronous psycopg datasource."""

from collections.abc import Generator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from dbos_psycopg_datasource._common import ISOLATION, PsycopgTransactionConfig, describe_url
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
from dbos_sdk.errors import (
    DBOSConfigurationError,
    DBOSDatabaseConnectionError,
    DBOSNotLaunchedError,
)

Conn = psycopg.Connection[TupleRow]


class PsycopgDataSource(SyncDataSource[Conn, PsycopgTransactionConfig]):
    """Transactions on PostgreSQL with psycopg 3; ``client`` is the transaction's
    ``psycopg.Connection``. Registers itself on construction (before ``DBOS.launch()``).

    ``url`` is a ``postgresql://`` URL (the datasource opens a pool of up to ``pool_size``
    connections at launch and closes it at shutdown) or a ``psycopg_pool.ConnectionPool``
    you own (used as it is, never closed); ``pool_kwargs`` go to the pool it opens (e.g.
    ``configure=``). Checkpoints go to ``<schema>.transaction_completion``, created at launch
    unless ``create_checkpoint_schema=False``.

    Do not commit or roll back on ``client``: the datasource ends the transaction.
    """

    schema: str

    def __init__(
        self,
        name: str,
        url: str | ConnectionPool[Conn],
        *,
        schema: str = "dbos",
        pool_size: int = 10,
        retry: TransactionRetryPolicy | None = None,
        create_checkpoint_schema: bool = True,
        connect_timeout_s: float = 10.0,
        pool_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(name, ds_type="psycopg", config_type=PsycopgTransactionConfig, retry=retry)
        if pool_size < 1:
            raise DBOSConfigurationError(
                f"PsycopgDataSource({name!r}, pool_size={pool_size}): give >= 1."
            )
        self.schema = check_pg_schema_name(schema)
        self._url = url if isinstance(url, str) else None
        self._given_pool = None if isinstance(url, str) else url
        self._pool: ConnectionPool[Conn] | None = None
        self._pool_size = pool_size
        self._create = create_checkpoint_schema
        self._connect_timeout_s = connect_timeout_s
        self._pool_kwargs = dict(pool_kwargs or {})
        register_data_source(self)

    # --- lifecycle -------------------------------------------------------------------

    def initialize(self) -> None:
        """Open the pool (unless one was given), check connectivity and the checkpoint table."""
        if self._given_pool is not None:
            self._pool = self._given_pool
        else:
            assert self._url is not None
            pool: ConnectionPool[Conn] = ConnectionPool(
                self._url,
                min_size=min(2, self._pool_size),
                max_size=self._pool_size,
                open=False,
                name=f"dbos-ds-{self.name}",
                kwargs={"autocommit": False},
                **self._pool_kwargs,
            )
            try:
                pool.open(wait=True, timeout=self._connect_timeout_s)
            except PoolTimeout as exc:
                pool.close()
                raise DBOSDatabaseConnectionError(
                    f"{self!r} cannot connect to PostgreSQL at {describe_url(self._url)} within "
                    f"{self._connect_timeout_s}s: {exc}. Check the URL and that the server is up."
                ) from exc
            self._pool = pool
        try:
            with self._autocommit() as conn:
                pg_ensure_checkpoint_schema(conn, self.schema, create=self._create, who=repr(self))
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        """Close the pool this datasource opened (a pool it was given stays open)."""
        pool, self._pool = self._pool, None
        if pool is not None and pool is not self._given_pool:
            pool.close()

    def install_checkpoint_schema(self) -> None:
        """Create the checkpoint schema and table now (idempotent): for deploy scripts and
        tests, as a role allowed to create them."""
        if self._pool is not None:
            with self._autocommit() as conn:
                pg_install_checkpoint_schema(conn, self.schema)
        elif self._url is not None:
            with psycopg.connect(self._url, autocommit=True) as conn:
                pg_install_checkpoint_schema(conn, self.schema)
        else:
            assert self._given_pool is not None
            with self._given_pool.connection() as conn:
                pg_install_checkpoint_schema(conn, self.schema)

    # --- hooks ----------------------------------------------------------------------------

    def _require_pool(self) -> ConnectionPool[Conn]:
        if self._pool is None:
            raise DBOSNotLaunchedError(
                f"{self!r} is not open: its transactions run between DBOS.launch() and "
                "DBOS.shutdown()."
            )
        return self._pool

    @contextmanager
    def _autocommit(self) -> Generator[Conn]:
        pool = self._require_pool()
        conn = pool.getconn()
        try:
            conn.autocommit = True
            yield conn
        finally:
            try:
                if not conn.closed:
                    conn.autocommit = False
            finally:
                pool.putconn(conn)

    def _open_transaction(self, config: PsycopgTransactionConfig) -> Conn:
        pool = self._require_pool()
        conn = pool.getconn()
        try:
            # Attributes only: psycopg puts them in the BEGIN it sends with the first statement.
            conn.autocommit = False
            conn.isolation_level = ISOLATION[config.isolation_level]
            conn.read_only = config.read_only
        except BaseException:
            pool.putconn(conn)
            raise
        return conn

    def _commit_transaction(self, client: Conn, checkpoint: TransactionCheckpoint | None) -> bool:
        return pg_commit_with_checkpoint(client, self.schema, checkpoint)

    def _rollback_transaction(self, client: Conn) -> None:
        client.rollback()

    def _close_transaction(self, client: Conn) -> None:
        self._require_pool().putconn(client)

    def _read_checkpoint(self, workflow_id: str, step_id: int) -> TransactionCheckpoint | None:
        with self._autocommit() as conn:
            return pg_read_checkpoint(conn, self.schema, workflow_id, step_id)

    def _write_error_checkpoint(self, checkpoint: TransactionCheckpoint) -> bool:
        with self._autocommit() as conn:
            return pg_insert_checkpoint_if_absent(conn, self.schema, checkpoint)

    def is_retriable_error(self, error: BaseException) -> bool:
        """Serialization failure, deadlock and lost connections (see
        :func:`dbos_sdk.datasource.is_pg_retriable_transaction_error`)."""
        return is_pg_retriable_transaction_error(error)
