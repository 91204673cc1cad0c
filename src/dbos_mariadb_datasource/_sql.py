"""Where the MariaDB datasource's SQL lives: the completion table's DDL, the checkpoint
statements, and the classification of server and client error numbers."""

import re
from typing import Final

import pymysql

from dbos_sdk.datasource import TransactionCheckpoint
from dbos_sdk.errors import DBOSCheckpointSchemaError, DBOSConfigurationError

MARIADB_CHECKPOINT_TABLE: Final = "transaction_completion"
"""The completion table's name, in the datasource's checkpoint ``database``."""

WORKFLOW_ID_MAX_BYTES: Final = 2048
"""The longest workflow ID (in UTF-8 bytes) the completion table's key holds."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def check_mariadb_database_name(database: str) -> str:
    """Return ``database`` if it is a plain identifier; raise DBOSConfigurationError."""
    if not _IDENTIFIER.fullmatch(database):
        raise DBOSConfigurationError(
            f"database={database!r} is not a plain identifier: use letters, digits and '_', "
            "not starting with a digit (at most 64 characters)."
        )
    return database


def create_transaction_completion_database_mariadb(database: str = "dbos") -> str:
    """The SQL that creates the database holding the completion table (idempotent)."""
    return f"CREATE DATABASE IF NOT EXISTS `{check_mariadb_database_name(database)}`"


def create_transaction_completion_table_mariadb(database: str = "dbos") -> str:
    """The SQL that creates ``<database>.transaction_completion`` (idempotent): one row
    per completed transaction step, keyed by workflow ID and step number, holding its
    output or error and the serialization format they are written in.

    The workflow ID is ``VARBINARY`` so that keys compare byte for byte: a ``VARCHAR``
    under a default collation would make ``"a"``, ``"A"`` and ``"a "`` the same workflow.
    """
    db = check_mariadb_database_name(database)
    return (
        f"CREATE TABLE IF NOT EXISTS `{db}`.`{MARIADB_CHECKPOINT_TABLE}` (\n"
        f"    workflow_id VARBINARY({WORKFLOW_ID_MAX_BYTES}) NOT NULL,\n"
        "    function_num INT NOT NULL,\n"
        "    output LONGTEXT,\n"
        "    error LONGTEXT,\n"
        "    serialization VARCHAR(64) NOT NULL,\n"
        "    created_at BIGINT NOT NULL DEFAULT (UNIX_TIMESTAMP(NOW(3)) * 1000),\n"
        "    PRIMARY KEY (workflow_id, function_num)\n"
        ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    )


class Statements:
    """The checkpoint statements for one checkpoint database (``%s`` placeholders)."""

    __slots__ = (
        "database",
        "exists",
        "insert",
        "insert_in_transaction",
        "select",
        "table",
        "verify",
    )

    database: str
    table: str
    insert: str
    insert_in_transaction: str
    """The checkpoint insert of a transaction: inserts nothing unless the transaction is
    still open (MariaDB's ``@@in_transaction``), so a checkpoint is never committed apart
    from writes the server rolled back (a deadlock the function swallowed) or committed
    earlier (an implicit commit)."""
    select: str
    verify: str
    exists: str

    def __init__(self, database: str) -> None:
        self.database = check_mariadb_database_name(database)
        self.table = f"`{self.database}`.`{MARIADB_CHECKPOINT_TABLE}`"
        columns = "workflow_id, function_num, output, error, serialization"
        self.insert = f"INSERT INTO {self.table} ({columns}) VALUES (%s, %s, %s, %s, %s)"
        self.insert_in_transaction = (
            f"INSERT INTO {self.table} ({columns}) "
            "SELECT %s, %s, %s, %s, %s FROM DUAL WHERE @@in_transaction = 1"
        )
        self.select = (
            f"SELECT {columns} FROM {self.table} WHERE workflow_id = %s AND function_num = %s"
        )
        self.verify = f"SELECT {columns} FROM {self.table} LIMIT 0"
        self.exists = "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s"


def checkpoint_params(cp: TransactionCheckpoint) -> tuple[object, ...]:
    key = cp.workflow_id.encode()
    if len(key) > WORKFLOW_ID_MAX_BYTES:
        # Checked here, not left to the server: without STRICT_TRANS_TABLES in sql_mode the
        # server would truncate the key, and two long IDs could share one checkpoint.
        raise DBOSConfigurationError(
            f"Workflow ID {cp.workflow_id[:60]!r}... is {len(key)} bytes long; the MariaDB "
            f"completion table holds workflow IDs of at most {WORKFLOW_ID_MAX_BYTES} bytes. "
            "Use a shorter workflow ID."
        )
    return (key, cp.step_id, cp.output, cp.error, cp.serialization)


def checkpoint_of(row: tuple[object, ...] | None) -> TransactionCheckpoint | None:
    if row is None:
        return None
    wfid, step, output, error, serialization = row
    assert isinstance(wfid, bytes) and isinstance(step, int) and isinstance(serialization, str)
    assert (output is None or isinstance(output, str)) and (error is None or isinstance(error, str))
    return TransactionCheckpoint(
        workflow_id=wfid.decode(),
        step_id=step,
        output=output,
        error=error,
        serialization=serialization,
    )


def schema_error(who: str, database: str, reason: str) -> DBOSCheckpointSchemaError:
    """The error raised when the completion table is missing or unusable."""
    return DBOSCheckpointSchemaError(
        f"Datasource {who} cannot use its transaction-completion table "
        f"`{database}`.`{MARIADB_CHECKPOINT_TABLE}`: {reason}. Create it once, as a user "
        "allowed to: call install_checkpoint_schema() on the datasource, or run the SQL "
        "returned by dbos_mariadb_datasource.create_transaction_completion_database_mariadb("
        f"{database!r}) and create_transaction_completion_table_mariadb({database!r})."
    )


# --- error classification ------------------------------------------------------------

ER_DUP_ENTRY: Final = 1062
ER_NO_SUCH_TABLE: Final = 1146
ER_BAD_DB_ERROR: Final = 1049
ER_BAD_FIELD_ERROR: Final = 1054
ER_UNKNOWN_SYSTEM_VARIABLE: Final = 1193

_RETRIABLE: Final = frozenset(
    {
        1213,  # ER_LOCK_DEADLOCK: InnoDB rolled the transaction back
        1205,  # ER_LOCK_WAIT_TIMEOUT: innodb_lock_wait_timeout passed waiting for a lock
        1020,  # ER_CHECKREAD: a snapshot write conflict (innodb_snapshot_isolation=ON)
        1053,  # ER_SERVER_SHUTDOWN
        1927,  # ER_CONNECTION_KILLED (MariaDB)
        4031,  # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8: disconnected for inactivity)
        2002,  # CR_CONNECTION_ERROR: cannot connect (socket)
        2003,  # CR_CONN_HOST_ERROR: cannot connect (TCP)
        2006,  # CR_SERVER_GONE_ERROR
        2013,  # CR_SERVER_LOST: lost connection during a query
        2055,  # CR_SERVER_LOST_EXTENDED
    }
)


def get_mariadb_error_code(error: BaseException) -> int | None:
    """The server or client error number of ``error`` (a ``pymysql`` error), or of the
    first exception in its ``__cause__`` chain that has one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, pymysql.err.MySQLError) and current.args:
            code = current.args[0]
            if isinstance(code, int) and code > 0:
                return code
        current = current.__cause__
    return None


def is_mariadb_retriable_error(error: BaseException) -> bool:
    """Whether running the transaction again may succeed: deadlock (1213), lock wait
    timeout (1205), a snapshot write conflict (1020), a lost or refused connection
    (2002, 2003, 2006, 2013, 2055) or a connection the server killed or is shutting down
    (1053, 1927, 4031)."""
    return get_mariadb_error_code(error) in _RETRIABLE


def is_mariadb_key_conflict_error(error: BaseException) -> bool:
    """Whether ``error`` is a duplicate-key error (1062)."""
    return get_mariadb_error_code(error) == ER_DUP_ENTRY
