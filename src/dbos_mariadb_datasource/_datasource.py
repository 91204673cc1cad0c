"""The MariaDB datasource: transactions on MariaDB (or MySQL) through PyMySQL."""

from collections.abc import Mapping
from typing import Any, Final

import pymysql
from pymysql.connections import Connection

from dbos_sdk.datasource import (
    SyncDataSource,
    TransactionCheckpoint,
    TransactionRetryPolicy,
    register_data_source,
)
from dbos_sdk.errors import (
    DBOSConfigurationError,
    DBOSDatabaseConnectionError,
    DBOSDataSourceError,
)

from ._connections import (
    ConnectionPool,
    MariaDBPoolTimeoutError,
    close_quietly,
    connect_kwargs,
    describe,
    in_transaction,
    open_connection,
)
from ._records import MariaDBIsolationLevel, MariaDBTransactionConfig
from ._sql import (
    ER_BAD_DB_ERROR,
    ER_BAD_FIELD_ERROR,
    ER_DUP_ENTRY,
    ER_NO_SUCH_TABLE,
    ER_UNKNOWN_SYSTEM_VARIABLE,
    Statements,
    checkpoint_of,
    checkpoint_params,
    create_transaction_completion_database_mariadb,
    create_transaction_completion_table_mariadb,
    get_mariadb_error_code,
    is_mariadb_retriable_error,
    schema_error,
)

_SET_ISOLATION: Final = {
    level: f"SET SESSION TRANSACTION ISOLATION LEVEL {level.value}"
    for level in MariaDBIsolationLevel
}
_START: Final = {False: "START TRANSACTION READ WRITE", True: "START TRANSACTION READ ONLY"}


class MariaDBDataSource(SyncDataSource[Connection, MariaDBTransactionConfig]):
    """Transactions on MariaDB (or MySQL) with PyMySQL; ``client`` is the transaction's
    ``pymysql.connections.Connection``. Registers itself on construction (before
    ``DBOS.launch()``).

    ``url_or_connect_kwargs`` is a ``mariadb://user:password@host:port/database`` URL
    (``mysql://`` too; options ``charset``, ``unix_socket``, ``connect_timeout``,
    ``read_timeout``, ``write_timeout``, ``ssl_ca``, ``ssl_cert``, ``ssl_key``) or a mapping
    of ``pymysql.connect()`` arguments. The datasource opens up to ``pool_size``
    connections (a transaction waits up to ``pool_timeout_s`` for a free one), keeps them
    in autocommit mode between transactions, and closes them at shutdown.

    Checkpoints go to ``<database>.transaction_completion`` (``database="dbos"``: MySQL's
    schemas are databases; InnoDB commits a transaction spanning two databases of one
    server atomically), created at launch unless ``create_checkpoint_schema=False``.

    Do not commit or roll back on ``client``, run no DDL in a transaction (MariaDB commits
    implicitly before and after DDL) and let the client's errors propagate (InnoDB rolls
    the whole transaction back on a deadlock). A transaction that ended early in one of
    these ways fails with :class:`~dbos_sdk.errors.DBOSDataSourceError` instead of writing
    its checkpoint apart from its writes.
    """

    database: str
    """The database holding the completion table."""

    def __init__(
        self,
        name: str,
        url_or_connect_kwargs: str | Mapping[str, Any],
        *,
        database: str = "dbos",
        pool_size: int = 10,
        pool_timeout_s: float = 10.0,
        retry: TransactionRetryPolicy | None = None,
        create_checkpoint_schema: bool = True,
    ) -> None:
        super().__init__(name, ds_type="mariadb", config_type=MariaDBTransactionConfig, retry=retry)
        if pool_size < 1 or not pool_timeout_s > 0:
            raise DBOSConfigurationError(
                f"MariaDBDataSource({name!r}): pool_size must be >= 1 and pool_timeout_s > 0 "
                f"(got {pool_size} and {pool_timeout_s})."
            )
        self._sql = Statements(database)
        self.database = self._sql.database
        self._target = url_or_connect_kwargs
        self._connect_kwargs = connect_kwargs(repr(self), url_or_connect_kwargs)
        self._create = create_checkpoint_schema
        self._pool = ConnectionPool(
            self._connect, size=pool_size, timeout_s=pool_timeout_s, who=repr(self)
        )
        self._guarded_insert = True
        register_data_source(self)

    # --- lifecycle -------------------------------------------------------------------

    def initialize(self) -> None:
        """Connect, then check (or create) the checkpoint table."""
        self._pool.open()
        try:
            try:
                conn = self._pool.take()
            except pymysql.err.Error as exc:  # refused, lost: the server is not there
                raise DBOSDatabaseConnectionError(
                    f"{self!r} cannot connect to MariaDB at {describe(self._target)}: {exc}. "
                    "Check the URL (or connect arguments) and that the server is up."
                ) from exc
            try:
                self._ensure_schema(conn)
                self._guarded_insert = self._has_in_transaction(conn)
            finally:
                self._pool.give_back(conn)
        except BaseException:
            self._pool.close()
            raise

    def destroy(self) -> None:
        """Close the connections this datasource opened (in-use ones when released)."""
        self._pool.close()

    def _has_in_transaction(self, conn: Connection) -> bool:
        """MariaDB has ``@@in_transaction``; MySQL does not (its checkpoint insert then
        relies on the server status of the function's last statement alone)."""
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@in_transaction")
        except pymysql.err.OperationalError as exc:
            if get_mariadb_error_code(exc) == ER_UNKNOWN_SYSTEM_VARIABLE:
                return False
            raise
        return True

    def install_checkpoint_schema(self) -> None:
        """Create the checkpoint database and table now (idempotent): for deploy scripts and
        tests, as a user allowed to create them."""
        conn = self._connect()
        try:
            self._install(conn)
        finally:
            close_quietly(conn)

    def _connect(self) -> Connection:
        try:
            return open_connection(self._connect_kwargs)
        except pymysql.err.OperationalError as exc:
            if is_mariadb_retriable_error(exc):  # refused or lost: a transaction retries it
                raise
            raise DBOSDatabaseConnectionError(
                f"{self!r} cannot connect to MariaDB at {describe(self._target)}: {exc}. "
                "Check the URL (or connect arguments), the user and its password."
            ) from exc

    def _install(self, conn: Connection) -> None:
        with conn.cursor() as cur:
            # CREATE DATABASE needs a privilege that CREATE ... IF NOT EXISTS checks even
            # when the database exists: skip it then, so a user with rights on it suffices.
            if not cur.execute(self._sql.exists, (self.database,)):
                cur.execute(create_transaction_completion_database_mariadb(self.database))
            cur.execute(create_transaction_completion_table_mariadb(self.database))

    def _ensure_schema(self, conn: Connection) -> None:
        try:
            with conn.cursor() as cur:
                cur.execute(self._sql.verify)
            return
        except pymysql.err.Error as exc:
            code = get_mariadb_error_code(exc)
            if is_mariadb_retriable_error(exc):
                raise
            if code == ER_BAD_FIELD_ERROR:
                reason = f"it exists with other columns ({exc})"
                raise schema_error(repr(self), self.database, reason) from exc
            if code not in (ER_NO_SUCH_TABLE, ER_BAD_DB_ERROR):  # e.g. 1142: no privilege
                raise schema_error(repr(self), self.database, f"reading it failed: {exc}") from exc
            if not self._create:
                reason = f"{exc} (creating it is turned off)"
                raise schema_error(repr(self), self.database, reason) from None
        try:
            self._install(conn)
        except pymysql.err.Error as exc:
            reason = f"it is missing and creating it failed: {exc}"
            raise schema_error(repr(self), self.database, reason) from exc

    # --- hooks --------------------------------------------------------------------------

    def _open_transaction(self, config: MariaDBTransactionConfig) -> Connection:
        conn = self._pool.take()
        try:
            with conn.cursor() as cur:
                cur.execute(_SET_ISOLATION[config.isolation_level])
                cur.execute(_START[config.read_only])
        except BaseException:
            self._release(conn)
            raise
        return conn

    def _commit_transaction(
        self, client: Connection, checkpoint: TransactionCheckpoint | None
    ) -> bool:
        if not in_transaction(client):  # the server said so in its last reply
            raise self._ended_early()
        if checkpoint is not None:
            insert = self._sql.insert_in_transaction if self._guarded_insert else self._sql.insert
            try:
                with client.cursor() as cur:
                    inserted = cur.execute(insert, checkpoint_params(checkpoint))
            except pymysql.err.IntegrityError as exc:
                if get_mariadb_error_code(exc) != ER_DUP_ENTRY:
                    raise
                client.rollback()  # another execution committed this step first
                return False
            if not inserted:
                raise self._ended_early()
        client.commit()
        return True

    def _ended_early(self) -> DBOSDataSourceError:
        return DBOSDataSourceError(
            f"A transaction of {self!r} ended inside its function, before the datasource "
            "committed it: the server rolled it back (a deadlock or lost lock wait that the "
            "function caught and ignored), or it was committed by a commit or rollback on the "
            "client or by a statement that commits implicitly (CREATE, ALTER, DROP, LOCK "
            "TABLES, ...). Some of its writes may be committed; let errors of the client "
            "propagate, move DDL out of transactions, and leave commit and rollback to the "
            "datasource."
        )

    def _rollback_transaction(self, client: Connection) -> None:
        if client.open:
            client.rollback()

    def _close_transaction(self, client: Connection) -> None:
        self._release(client)

    def _release(self, conn: Connection) -> None:
        broken = not conn.open
        if not broken and in_transaction(conn):
            try:
                conn.rollback()
            except pymysql.err.Error:
                broken = True
        self._pool.give_back(conn, discard=broken)

    def _read_checkpoint(self, workflow_id: str, step_id: int) -> TransactionCheckpoint | None:
        pool = self._pool
        conn = pool.take()
        try:
            with conn.cursor() as cur:
                cur.execute(self._sql.select, (workflow_id.encode(), step_id))
                row = cur.fetchone()
        except BaseException:
            pool.give_back(conn, discard=True)
            raise
        pool.give_back(conn)
        return checkpoint_of(row)

    def _write_error_checkpoint(self, checkpoint: TransactionCheckpoint) -> bool:
        pool = self._pool
        conn = pool.take()
        try:
            with conn.cursor() as cur:
                cur.execute(self._sql.insert, checkpoint_params(checkpoint))
        except pymysql.err.IntegrityError as exc:
            pool.give_back(conn)
            if get_mariadb_error_code(exc) == ER_DUP_ENTRY:
                return False
            raise
        except BaseException:
            pool.give_back(conn, discard=True)
            raise
        pool.give_back(conn)
        return True

    def is_retriable_error(self, error: BaseException) -> bool:
        """Deadlock, lock wait timeout, lost connections (see
        :func:`is_mariadb_retriable_error`) and a pool that stayed busy."""
        return is_mariadb_retriable_error(error) or _caused_by_pool_timeout(error)


def _caused_by_pool_timeout(error: BaseException) -> bool:
    current: BaseException | None = error
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        if isinstance(current, MariaDBPoolTimeoutError):
            return True
        seen.add(id(current))
        current = current.__cause__
    return False
