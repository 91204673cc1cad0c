"""What one ``@on_change`` subscribes to: validated once, where it enters."""

import hashlib
import math
import re
from collections.abc import Sequence
from typing import Literal, TypeGuard, cast, get_args
from urllib.parse import urlsplit

import attrs

from dbos_sdk.errors import DBOSConfigurationError

ChangeMode = Literal["notify", "poll", "both"]
"""How changes are found: a trigger's NOTIFY (low latency), polling the version column
(no trigger needed), or both (NOTIFY with polling as a safety net). Every mode catches
up from the dispatch state at launch."""

_MODES: tuple[str, ...] = get_args(ChangeMode)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


@attrs.frozen(kw_only=True)
class ChangeSubscription:
    """One table watched for one workflow (what ``PgChangeReceiver.on_change`` records).

    Identifiers are used exactly as written (quoted), so ``Orders`` and ``orders`` are
    different tables, as with ``psycopg.sql.Identifier``.
    """

    receiver: str
    """The receiver's name (the ``service`` of its dispatch state)."""
    function: str
    """The decorated function's qualified name, for messages."""
    schema: str | None
    """The table's schema, or None for the connection's search_path."""
    table: str
    key_columns: tuple[str, ...]
    """Columns that identify a record (usually the primary key)."""
    version_column: str
    """An integer or timestamp column that grows with every change of a record."""
    mode: ChangeMode
    poll_interval: float
    """Seconds between polls ("poll" and "both")."""
    install_trigger: bool
    """Install the NOTIFY trigger at launch (else it must exist already)."""
    queue: str | None
    """Enqueue the workflows on this DBOS queue instead of starting them at once."""

    @property
    def qualified_table(self) -> str:
        """``schema.table`` (or ``table``), as the dispatch-state key and in workflow IDs."""
        return f"{self.schema}.{self.table}" if self.schema else self.table

    @property
    def channel(self) -> str:
        """The NOTIFY channel (also the trigger's and trigger function's name)."""
        return channel_name(self.schema, self.table, self.key_columns)

    @property
    def listens(self) -> bool:
        """Whether this subscription LISTENs for the trigger's notifications."""
        return self.mode in ("notify", "both")

    @property
    def polls(self) -> bool:
        """Whether this subscription polls the table by its version column."""
        return self.mode in ("poll", "both")


def channel_name(schema: str | None, table: str, key_columns: Sequence[str]) -> str:
    """A stable identifier (well under Postgres's 63 bytes) for a table and its key."""
    ident = "\x00".join([schema or "", table, *key_columns])
    return "dbos_pgn_" + hashlib.sha256(ident.encode()).hexdigest()[:16]


def split_table(table: object, where: str) -> tuple[str | None, str]:
    """``"schema.table"`` or ``"table"`` as (schema, table), each a plain identifier."""
    parts = table.split(".") if isinstance(table, str) else []
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise DBOSConfigurationError(
            f"{where}: table={table!r} is not a table name: write 'table' or "
            "'schema.table' with letters, digits, '_' or '$', not starting with a digit."
        )
    return (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])


def check_key_columns(key_columns: object, where: str) -> tuple[str, ...]:
    """The key columns as a tuple of plain identifiers; never a bare string."""
    if isinstance(key_columns, str) or not isinstance(key_columns, list | tuple):
        raise DBOSConfigurationError(
            f"{where}: key_columns={key_columns!r} must be a list of column names, "
            "e.g. key_columns=['id']."
        )
    cols = list(cast("Sequence[object]", key_columns))
    if not cols:
        raise DBOSConfigurationError(
            f"{where}: key_columns is empty; name the columns that identify a record."
        )
    out: list[str] = []
    for col in cols:
        if not isinstance(col, str) or not _IDENTIFIER.match(col):
            raise DBOSConfigurationError(
                f"{where}: key_columns contains {col!r}, which is not a plain column name."
            )
        if col in out:
            raise DBOSConfigurationError(f"{where}: key_columns names {col!r} twice.")
        out.append(col)
    return tuple(out)


def make_subscription(
    *,
    receiver: str,
    function: str,
    table: object,
    key_columns: object,
    version_column: object,
    mode: object,
    poll_interval: object,
    install_trigger: object,
    queue: object,
) -> ChangeSubscription:
    """Validate the arguments of ``on_change``; every error names receiver, function and
    setting."""
    where = f"PgChangeReceiver {receiver!r}, on_change for function {function!r}"
    schema, name = split_table(table, where)
    keys = check_key_columns(key_columns, where)
    if not isinstance(version_column, str) or not _IDENTIFIER.match(version_column):
        raise DBOSConfigurationError(
            f"{where}: version_column={version_column!r} is not a plain column name."
        )
    if version_column in keys:
        raise DBOSConfigurationError(
            f"{where}: version_column={version_column!r} is also a key column; the version "
            "must be a separate column that grows with every change."
        )
    if not _is_mode(mode):
        raise DBOSConfigurationError(
            f"{where}: mode={mode!r} is not one of {', '.join(map(repr, _MODES))}."
        )
    if (
        isinstance(poll_interval, bool)
        or not isinstance(poll_interval, int | float)
        or not math.isfinite(poll_interval)
        or poll_interval <= 0
    ):
        raise DBOSConfigurationError(
            f"{where}: poll_interval={poll_interval!r} must be a positive number of seconds."
        )
    if not isinstance(install_trigger, bool):
        raise DBOSConfigurationError(
            f"{where}: install_trigger={install_trigger!r} must be True or False."
        )
    if install_trigger and mode == "poll":
        raise DBOSConfigurationError(
            f"{where}: install_trigger=True has no use with mode='poll' (polling needs no "
            "trigger); use mode='notify' or 'both', or drop install_trigger."
        )
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise DBOSConfigurationError(f"{where}: queue={queue!r} must be a queue name or None.")
    return ChangeSubscription(
        receiver=receiver,
        function=function,
        schema=schema,
        table=name,
        key_columns=keys,
        version_column=version_column,
        mode=mode,
        poll_interval=float(poll_interval),
        install_trigger=install_trigger,
        queue=queue,
    )


def _is_mode(mode: object) -> TypeGuard[ChangeMode]:
    return isinstance(mode, str) and mode in _MODES


def redact(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password:
            return url.replace(f":{parts.password}@", ":***@", 1)
    except ValueError:
        pass
    return url
