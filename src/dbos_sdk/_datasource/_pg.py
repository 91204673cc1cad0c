"""PostgreSQL helpers for datasource authors: the completion table's SQL, SQLSTATE
classification, and the checkpoint statements on a psycopg connection (sync and async).

Every PostgreSQL datasource stores its checkpoints in ``<schema>.transaction_completion``
(default schema ``dbos``); the SQL lives here once.
"""

import functools
import re
from typing import Any

import psycopg
from psycopg import sql

from dbos_sdk.errors import DBOSCheckpointSchemaError, DBOSConfigurationError

from ._records import TransactionCheckpoint

CHECKPOINT_TABLE = "transaction_completion"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SQLSTATE = re.compile(r"[0-9A-Z]{5}")
_CONNECTION_LOSS = frozenset({"57P01", "57P02", "57P03"})  # admin/crash shutdown, starting up


def check_pg_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a plain SQL identifier; raise DBOSConfigurationError."""
    if not _IDENTIFIER.fullmatch(schema):
        raise DBOSConfigurationError(
            f"schema={schema!r} is not a plain SQL identifier: use letters, digits and '_', "
            "not starting with a digit (at most 63 characters)."
        )
    return schema


def create_transaction_completion_schema_pg(schema: str = "dbos") -> str:
    """The SQL that creates the schema holding the completion table (idempotent)."""
    return f'CREATE SCHEMA IF NOT EXISTS "{check_pg_schema_name(schema)}"'


def create_transaction_completion_table_pg(schema: str = "dbos") -> str:
    """The SQL that creates ``<schema>.transaction_completion`` (idempotent): one row per
    completed transaction step, keyed by workflow ID and step number, holding its output
    or error and the serialization format they are written in."""
    return (
        f'CREATE TABLE IF NOT EXISTS "{check_pg_schema_name(schema)}".{CHECKPOINT_TABLE} (\n'
        "    workflow_id TEXT NOT NULL,\n"
        "    function_num INTEGER NOT NULL,\n"
        "    output TEXT,\n"
        "    error TEXT,\n"
        "    serialization TEXT NOT NULL,\n"
        "    created_at BIGINT NOT NULL DEFAULT (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT,\n"
        "    PRIMARY KEY (workflow_id, function_num)\n"
        ")"
    )


# --- error classification --------------------------------------------------------------


def get_pg_error_code(error: BaseException) -> str | None:
    """The SQLSTATE of ``error`` or of the first exception in its ``__cause__`` chain that
    has one (so a SQLAlchemy error wrapping a psycopg one works); only a real
    five-character code (digits and capitals) counts."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for attr in ("sqlstate", "pgcode"):
            code = getattr(current, attr, None)
            if isinstance(code, str) and _SQLSTATE.fullmatch(code):
                return code
        current = current.__cause__
    return None


def _lost_connection(error: BaseException) -> bool:
    """A psycopg OperationalError without a SQLSTATE: the connection broke (or could not
    be made) before the server answered."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, psycopg.OperationalError) and current.sqlstate is None:
            return True
        current = current.__cause__
    return False


def is_pg_retriable_transaction_error(error: BaseException) -> bool:
    """Whether running the transaction again may succeed: serialization failure (40001),
    deadlock (40P01), a connection exception (class 08), a server shutting down or
    starting (57P01-57P03), or a connection lost without a SQLSTATE."""
    code = get_pg_error_code(error)
    if code is not None:
        return code in ("40001", "40P01") or code.startswith("08") or code in _CONNECTION_LOSS
    return _lost_connection(error)


def is_pg_key_conflict_error(error: BaseException) -> bool:
    """Whether ``error`` is a unique-key violation (23505)."""
    return get_pg_error_code(error) == "23505"


# --- checkpoint statements ---------------------------------------------------------------

_COLUMNS = sql.SQL("workflow_id, function_num, output, error, serialization")


@functools.lru_cache(maxsize=32)
def _statements(schema: str) -> dict[str, sql.Composed]:
    table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(CHECKPOINT_TABLE))
    values = sql.SQL("VALUES (%s, %s, %s, %s, %s)")
    return {
        # One round trip for the checkpoint and the commit: a simple-protocol query with
        # two statements (client-side parameter binding). A key conflict aborts it before
        # COMMIT runs, so a loser's writes are never committed.
        "insert_commit": sql.SQL("INSERT INTO {} ({}) {}; COMMIT").format(table, _COLUMNS, values),
        "insert_if_absent": sql.SQL(
            "INSERT INTO {} ({}) {} ON CONFLICT (workflow_id, function_num) DO NOTHING "
            "RETURNING function_num"
        ).format(table, _COLUMNS, values),
        "select": sql.SQL("SELECT {} FROM {} WHERE workflow_id = %s AND function_num = %s").format(
            _COLUMNS, table
        ),
        "verify": sql.SQL("SELECT {} FROM {} WHERE false").format(_COLUMNS, table),
    }


def _params(cp: TransactionCheckpoint) -> tuple[object, ...]:
    return (cp.workflow_id, cp.step_id, cp.output, cp.error, cp.serialization)


def _row(row: Any) -> TransactionCheckpoint | None:
    if row is None:
        return None
    return TransactionCheckpoint(
        workflow_id=row[0], step_id=row[1], output=row[2], error=row[3], serialization=row[4]
    )


def _own_conflict(error: psycopg.errors.UniqueViolation, schema: str) -> bool:
    """The conflict is on the checkpoint key (not a deferred user constraint at COMMIT)."""
    return error.diag.table_name == CHECKPOINT_TABLE and error.diag.schema_name == schema


def pg_commit_with_checkpoint(
    conn: "psycopg.Connection[Any]", schema: str, checkpoint: TransactionCheckpoint | None
) -> bool:
    """Insert ``checkpoint`` (if any) in the open transaction and commit, in one round trip.
    If the checkpoint's key exists already, roll back and return False."""
    if checkpoint is None:
        conn.commit()
        return True
    try:
        with psycopg.ClientCursor(conn) as cur:
            cur.execute(_statements(schema)["insert_commit"], _params(checkpoint))
    except psycopg.errors.UniqueViolation as exc:
        if not _own_conflict(exc, schema):
            raise
        conn.rollback()
        return False
    return True


async def pg_commit_with_checkpoint_async(
    conn: "psycopg.AsyncConnection[Any]", schema: str, checkpoint: TransactionCheckpoint | None
) -> bool:
    """Async twin of :func:`pg_commit_with_checkpoint`."""
    if checkpoint is None:
        await conn.commit()
        return True
    try:
        async with psycopg.AsyncClientCursor(conn) as cur:
            await cur.execute(_statements(schema)["insert_commit"], _params(checkpoint))
    except psycopg.errors.UniqueViolation as exc:
        if not _own_conflict(exc, schema):
            raise
        await conn.rollback()
        return False
    return True


def pg_read_checkpoint(
    conn: "psycopg.Connection[Any]", schema: str, workflow_id: str, step_id: int
) -> TransactionCheckpoint | None:
    """The checkpoint of that step (run in whatever transaction state ``conn`` is in)."""
    cur = conn.execute(_statements(schema)["select"], (workflow_id, step_id))
    return _row(cur.fetchone())


async def pg_read_checkpoint_async(
    conn: "psycopg.AsyncConnection[Any]", schema: str, workflow_id: str, step_id: int
) -> TransactionCheckpoint | None:
    """Async twin of :func:`pg_read_checkpoint`."""
    cur = await conn.execute(_statements(schema)["select"], (workflow_id, step_id))
    return _row(await cur.fetchone())


def pg_insert_checkpoint_if_absent(
    conn: "psycopg.Connection[Any]", schema: str, checkpoint: TransactionCheckpoint
) -> bool:
    """Insert ``checkpoint`` unless its key exists (conflict-safe); return whether it was
    inserted. The caller commits (or runs ``conn`` in autocommit mode)."""
    cur = conn.execute(_statements(schema)["insert_if_absent"], _params(checkpoint))
    return cur.fetchone() is not None


async def pg_insert_checkpoint_if_absent_async(
    conn: "psycopg.AsyncConnection[Any]", schema: str, checkpoint: TransactionCheckpoint
) -> bool:
    """Async twin of :func:`pg_insert_checkpoint_if_absent`."""
    cur = await conn.execute(_statements(schema)["insert_if_absent"], _params(checkpoint))
    return await cur.fetchone() is not None


# --- schema check and install --------------------------------------------------------------

_MISSING = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.UndefinedColumn,
)


def _install_statements(schema: str) -> list[str]:
    return [
        # Serialize concurrent installers: CREATE ... IF NOT EXISTS can still collide.
        "SELECT pg_advisory_xact_lock(hashtext('dbos_sdk.transaction_completion'))",
        create_transaction_completion_schema_pg(schema),
        create_transaction_completion_table_pg(schema),
    ]


def schema_error(who: str, schema: str, reason: str) -> DBOSCheckpointSchemaError:
    """The error a PostgreSQL datasource raises when its checkpoint table is unusable."""
    return DBOSCheckpointSchemaError(
        f"Datasource {who} cannot use its transaction-completion table "
        f'"{schema}".{CHECKPOINT_TABLE}: {reason}. Create it once, as a role allowed to: '
        f"call install_checkpoint_schema() on the datasource, or run the SQL returned by "
        f"dbos_sdk.datasource.create_transaction_completion_schema_pg({schema!r}) and "
        f"create_transaction_completion_table_pg({schema!r})."
    )


def pg_install_checkpoint_schema(conn: "psycopg.Connection[Any]", schema: str) -> None:
    """Create the schema and the completion table (idempotent), committing on ``conn``."""
    with conn.transaction():
        for statement in _install_statements(schema):
            conn.execute(statement.encode())


async def pg_install_checkpoint_schema_async(
    conn: "psycopg.AsyncConnection[Any]", schema: str
) -> None:
    """Async twin of :func:`pg_install_checkpoint_schema`."""
    async with conn.transaction():
        for statement in _install_statements(schema):
            await conn.execute(statement.encode())


def pg_ensure_checkpoint_schema(
    conn: "psycopg.Connection[Any]", schema: str, *, create: bool, who: str
) -> None:
    """Verify the completion table on an autocommit connection; create it if it is missing
    and ``create``; otherwise raise :func:`schema_error`."""
    try:
        conn.execute(_statements(schema)["verify"])
        return
    except _MISSING as missing:
        if not create:
            raise schema_error(who, schema, f"{missing} (creating it is turned off)") from None
    try:
        pg_install_checkpoint_schema(conn, schema)
    except psycopg.Error as exc:
        raise schema_error(who, schema, f"it is missing and creating it failed: {exc}") from exc


async def pg_ensure_checkpoint_schema_async(
    conn: "psycopg.AsyncConnection[Any]", schema: str, *, create: bool, who: str
) -> None:
    """Async twin of :func:`pg_ensure_checkpoint_schema`."""
    try:
        await conn.execute(_statements(schema)["verify"])
        return
    except _MISSING as missing:
        if not create:
            raise schema_error(who, schema, f"{missing} (creating it is turned off)") from None
    try:
        await pg_install_checkpoint_schema_async(conn, schema)
    except psycopg.Error as exc:
        raise schema_error(who, schema, f"it is missing and creating it failed: {exc}") from exc
