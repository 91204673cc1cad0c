"""Every SQL statement of the receiver: identifiers quoted with psycopg.sql, values bound."""

from collections.abc import Sequence
from typing import Final

from psycopg import sql

# The payload names the changed record by its key columns, as text, so it stays far below
# the 8000-byte NOTIFY limit whatever the row holds; the receiver reads the row itself.
_TRIGGER_TEMPLATE: Final = """\
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $dbos$
BEGIN
  PERFORM pg_notify({channel}, json_build_object('k', json_build_array({keys}))::text);
  RETURN NEW;
END
$dbos$;
DROP TRIGGER IF EXISTS {trigger} ON {table};
CREATE TRIGGER {trigger} AFTER INSERT OR UPDATE ON {table}
  FOR EACH ROW EXECUTE FUNCTION {function}();
"""


def table_ident(schema: str | None, table: str) -> sql.Composable:
    return sql.Identifier(schema, table) if schema else sql.Identifier(table)


def trigger_statement(
    schema: str | None, table: str, key_columns: Sequence[str], channel: str
) -> sql.Composed:
    """The SQL that installs the NOTIFY trigger (idempotent: it replaces an older one)."""
    function = sql.Identifier(schema, channel) if schema else sql.Identifier(channel)
    keys = sql.SQL(", ").join(
        sql.SQL("NEW.{}::text").format(sql.Identifier(k)) for k in key_columns
    )
    return sql.SQL(_TRIGGER_TEMPLATE).format(
        function=function,
        channel=sql.Literal(channel),
        keys=keys,
        trigger=sql.Identifier(channel),
        table=table_ident(schema, table),
    )


def listen(channel: str) -> sql.Composed:
    return sql.SQL("LISTEN {}").format(sql.Identifier(channel))


TABLE_OID: Final = "SELECT to_regclass(%s)::oid AS oid"
"""The table's OID (NULL when there is no such table); bind the quoted table name."""

COLUMNS: Final = """\
SELECT attname AS name, atttypid::int AS type_oid FROM pg_attribute
WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped"""
"""(name, type OID) of every column of the table with the bound OID."""

LOCK_CHANNEL: Final = "SELECT pg_advisory_xact_lock(hashtext(%s))"
"""Serializes trigger installation for one channel, until the transaction ends."""

TRIGGER_EXISTS: Final = (
    "SELECT 1 FROM pg_trigger WHERE tgrelid = %s AND tgname = %s AND tgenabled <> 'D'"
)


def page(
    schema: str | None,
    table: str,
    version_column: str,
    key_columns: Sequence[str],
    after: str,
) -> sql.Composed:
    """Rows in (version, key) order, ``LIMIT %s`` bound last.

    ``after`` is "all" (every record with a version), "from_version" (``version >= %s``: resuming from the
    dispatch state, where records sharing the last version may not all have been started)
    or "after_row" (``(version, key...) > (%s, ...)``: the next page of one pass).
    """
    order = [sql.Identifier(version_column), *(sql.Identifier(k) for k in key_columns)]
    where: sql.Composable
    if after == "all":
        where = sql.SQL("{} IS NOT NULL").format(sql.Identifier(version_column))
    elif after == "from_version":
        where = sql.SQL("{} >= %s").format(sql.Identifier(version_column))
    else:
        where = sql.SQL("({}) > ({})").format(
            sql.SQL(", ").join(order), sql.SQL(", ").join(sql.Placeholder() for _ in order)
        )
    return sql.SQL("SELECT * FROM {} WHERE {} ORDER BY {} LIMIT %s").format(
        table_ident(schema, table), where, sql.SQL(", ").join(order)
    )


def by_key(schema: str | None, table: str, key_columns: Sequence[str]) -> sql.Composed:
    """The row whose key columns equal the bound values. Bind them as Python ``str``:
    psycopg sends a ``str`` untyped, so Postgres reads it as the column's own type."""
    conds = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in key_columns)
    return sql.SQL("SELECT * FROM {} WHERE {}").format(table_ident(schema, table), conds)
