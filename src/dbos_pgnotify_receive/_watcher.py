"""The receiver's connections and background thread: LISTEN, polling, catch-up, dispatch.

Order of operations for every record: start its workflow (durable when
DBOS.start_workflow_registered returns), then advance the dispatch state. A crash in
between re-reads the record at the next launch, and its workflow ID (receiver, function,
table, key, version) makes that second start a no-op.
"""

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, LiteralString, cast
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row

from dbos_pgnotify_receive import _sql
from dbos_pgnotify_receive._config import ChangeSubscription, redact
from dbos_sdk import (
    DBOS,
    DBOSConfigurationError,
    DBOSExternalState,
    MethodRegistration,
    StartWorkflowOptions,
)

VersionKind = Literal["seq", "time"]
_SEQ_TYPES = {20: "bigint", 21: "smallint", 23: "integer"}
_TIME_TYPES = {1114: "timestamp", 1184: "timestamptz"}
_LISTEN_WAIT_S = 0.25
"""The longest the thread blocks on LISTEN, so that stop() returns promptly."""

Conn = psycopg.Connection[tuple[Any, ...]]


@dataclass(slots=True, eq=False)
class Target:
    """One subscription of one workflow, with its progress in this process."""

    sub: ChangeSubscription
    method: MethodRegistration
    kind: VersionKind = "seq"
    resume: object = None
    """The version in the dispatch state at launch: the first pass starts there."""
    cursor: tuple[Any, ...] | None = None
    """(version, *key) of the last record a pass started; the next page starts after it."""
    next_poll: float = 0.0

    @property
    def where(self) -> str:
        return f"PgChangeReceiver {self.sub.receiver!r}, function {self.sub.function!r}"


def version_text(value: object) -> str:
    """A version or key value as text: timestamps in ISO form (UTC when zoned)."""
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).isoformat()
    return str(value)


def workflow_id(target: Target, row: DictRow) -> str:
    """The workflow ID of one version of one record: the same record and version always
    give the same ID, so seeing a change twice starts one workflow."""
    sub = target.sub
    key = "/".join(quote(version_text(row[k]), safe="") for k in sub.key_columns)
    version = version_text(row[sub.version_column])
    return f"pgchange:{sub.receiver}:{target.method.name}:{sub.qualified_table}:{key}@{version}"


class Watcher:
    """Owns the receiver's two connections (queries, LISTEN) and its thread."""

    def __init__(
        self,
        receiver: str,
        url: str,
        connect_timeout: float,
        batch_size: int,
        targets: Sequence[Target],
    ) -> None:
        self._receiver = receiver
        self._url = url
        self._connect_timeout = connect_timeout
        self._batch = batch_size
        self._targets = list(targets)
        self._query: Conn | None = None
        self._listen: Conn | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._scan_all = True

    # --- launch and shutdown (on the caller's thread) ----------------------------------

    def open(self) -> None:
        """Connect, check every subscription against the catalog, install or check the
        triggers, LISTEN, and read the dispatch state. Raises DBOSConfigurationError."""
        try:
            self._query = self._connect()
            for t in self._targets:
                self._check(self._query, t)
            self._listen = self._open_listener()
            for t in self._targets:
                t.resume = self._load_state(t)
        except psycopg.Error as exc:
            self.close()
            functions = ", ".join(sorted({repr(t.sub.function) for t in self._targets}))
            raise DBOSConfigurationError(
                f"PgChangeReceiver {self._receiver!r} (for {functions}) cannot use the "
                f"database at url={redact(self._url)!r}: {type(exc).__name__}: "
                f"{str(exc).strip()}. Check the url setting and that the server is running."
            ) from exc
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"dbos-pgnotify-{self._receiver}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.close()

    def close(self) -> None:
        for conn in (self._query, self._listen):
            if conn is not None:
                conn.close()
        self._query = self._listen = None

    # --- connections and checks ----------------------------------------------------------

    def _connect(self) -> Conn:
        timeout = max(2, round(self._connect_timeout))
        return psycopg.connect(self._url, autocommit=True, connect_timeout=timeout)

    def _open_listener(self) -> Conn | None:
        channels = sorted({t.sub.channel for t in self._targets if t.sub.listens})
        if not channels:
            return None
        conn = self._connect()
        for channel in channels:
            conn.execute(_sql.listen(channel))
        return conn

    def _check(self, conn: Conn, t: Target) -> None:
        sub = t.sub
        qualified = _sql.table_ident(sub.schema, sub.table).as_string(conn)
        found = _dicts(conn, _sql.TABLE_OID, (qualified,)).fetchone()
        oid = found["oid"] if found is not None else None
        if oid is None:
            raise DBOSConfigurationError(
                f"{t.where}: table={sub.qualified_table!r} does not exist in the database at "
                f"url={redact(self._url)!r}; create it, or fix the table setting."
            )
        columns = {r["name"]: int(r["type_oid"]) for r in _dicts(conn, _sql.COLUMNS, (oid,))}
        missing = [k for k in sub.key_columns if k not in columns]
        if missing:
            raise DBOSConfigurationError(
                f"{t.where}: key_columns names {missing} that table {sub.qualified_table!r} "
                f"does not have (its columns: {sorted(columns)})."
            )
        type_oid = columns.get(sub.version_column)
        if type_oid is None:
            raise DBOSConfigurationError(
                f"{t.where}: version_column={sub.version_column!r} is not a column of table "
                f"{sub.qualified_table!r} (its columns: {sorted(columns)})."
            )
        if type_oid in _SEQ_TYPES:
            t.kind = "seq"
        elif type_oid in _TIME_TYPES:
            t.kind = "time"
        else:
            raise DBOSConfigurationError(
                f"{t.where}: version_column={sub.version_column!r} of table "
                f"{sub.qualified_table!r} must be an integer ({', '.join(_SEQ_TYPES.values())}) "
                f"or a timestamp ({', '.join(_TIME_TYPES.values())}) column that grows with "
                "every change of a record."
            )
        if not sub.listens:
            return
        trigger = _sql.trigger_statement(sub.schema, sub.table, sub.key_columns, sub.channel)
        if sub.install_trigger:
            # Serialized by an advisory lock, and skipped when present (its name encodes
            # the table and key, hence its body), so processes launching together agree.
            with conn.transaction():
                conn.execute(_sql.LOCK_CHANNEL, (sub.channel,))
                if conn.execute(_sql.TRIGGER_EXISTS, (oid, sub.channel)).fetchone() is None:
                    conn.execute(trigger)
        elif conn.execute(_sql.TRIGGER_EXISTS, (oid, sub.channel)).fetchone() is None:
            raise DBOSConfigurationError(
                f"{t.where}: mode={sub.mode!r} needs a NOTIFY trigger on table "
                f"{sub.qualified_table!r}, and it is not installed. Pass install_trigger=True, "
                "call PgChangeReceiver.install_trigger(), or run this SQL:\n"
                + trigger.as_string(conn)
            )

    def _load_state(self, t: Target) -> object:
        state = DBOS.get_event_dispatch_state(self._receiver, t.method.name, t.sub.qualified_table)
        if state is None or state.value is None:
            return None
        try:
            return int(state.value) if t.kind == "seq" else datetime.fromisoformat(state.value)
        except ValueError:
            raise DBOSConfigurationError(
                f"{t.where}: the dispatch state of table {t.sub.qualified_table!r} holds "
                f"{state.value!r}, which is not a {t.kind} version: did the type of "
                f"version_column={t.sub.version_column!r} change?"
            ) from None

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                if self._query is None:
                    self._query = self._connect()
                    self._listen = self._open_listener()
                    self._scan_all = True  # notifications may have been lost meanwhile
                if self._scan_all:
                    for t in self._targets:
                        self._scan(t)
                    self._scan_all = False
                self._cycle()
                delay = 0.5
            except Exception:
                if self._stop.is_set():
                    break
                DBOS.logger.exception(
                    "PgChangeReceiver %r: dispatching changes failed; retrying in %.1fs",
                    self._receiver,
                    delay,
                )
                self.close()
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _cycle(self) -> None:
        now = time.monotonic()
        for t in self._targets:
            if t.sub.polls and t.next_poll <= now:
                self._scan(t)
                t.next_poll = time.monotonic() + t.sub.poll_interval
        polls = [t.next_poll for t in self._targets if t.sub.polls]
        wait = max(0.0, min(polls, default=60.0) - time.monotonic())
        if self._listen is None:
            self._stop.wait(wait)
            return
        notes = list(self._listen.notifies(timeout=min(wait, _LISTEN_WAIT_S), stop_after=1))
        if notes:
            notes += self._listen.notifies(timeout=0)
            self._on_notifications((n.channel, n.payload) for n in notes)

    def _on_notifications(self, notes: Iterable[tuple[str, str]]) -> None:
        assert self._query is not None
        for channel, payload in dict.fromkeys(notes):
            keys = _payload_keys(payload)
            if keys is None:
                DBOS.logger.warning(
                    "PgChangeReceiver %r: ignoring a notification on %s with payload %r "
                    "(expected {'k': [key, ...]} from the receiver's trigger)",
                    self._receiver,
                    channel,
                    payload,
                )
                continue
            for t in self._targets:
                if not t.sub.listens or t.sub.channel != channel or self._stop.is_set():
                    continue
                if len(keys) != len(t.sub.key_columns):
                    continue
                query = _sql.by_key(t.sub.schema, t.sub.table, t.sub.key_columns)
                row = _dicts(self._query, query, keys).fetchone()
                if row is not None and row[t.sub.version_column] is not None:
                    self._start(t, row)
                    self._advance(t, row[t.sub.version_column])

    def _scan(self, t: Target) -> None:
        """Start every record after the target's position, one page at a time."""
        assert self._query is not None
        sub = t.sub
        while not self._stop.is_set():
            if t.cursor is not None:
                after, params = "after_row", [*t.cursor, self._batch]
            elif t.resume is not None:
                after, params = "from_version", [t.resume, self._batch]
            else:
                after, params = "all", [self._batch]
            query = _sql.page(sub.schema, sub.table, sub.version_column, sub.key_columns, after)
            rows = _dicts(self._query, query, params).fetchall()
            for row in rows:
                self._start(t, row)
            if not rows:
                return
            last = rows[-1]
            self._advance(t, last[sub.version_column])
            t.cursor = (last[sub.version_column], *(last[k] for k in sub.key_columns))
            if len(rows) < self._batch:
                return

    def _start(self, t: Target, row: DictRow) -> None:
        options = StartWorkflowOptions(workflow_id=workflow_id(t, row), queue_name=t.sub.queue)
        DBOS.start_workflow_registered(t.method, (dict(row),), {}, options)

    def _advance(self, t: Target, version: object) -> None:
        """Record ``version`` as dispatched (a lower one than stored changes nothing)."""
        if isinstance(version, datetime):
            stamp = version if version.tzinfo else version.replace(tzinfo=UTC)
            seq, when = None, stamp.timestamp()
        else:
            seq, when = int(str(version)), None
        DBOS.upsert_event_dispatch_state(
            DBOSExternalState(
                service=self._receiver,
                workflow_fn_name=t.method.name,
                key=t.sub.qualified_table,
                value=version_text(version),
                update_seq=seq,
                update_time=when,
            )
        )


def _dicts(
    conn: Conn, query: "LiteralString | sql.Composed", params: Sequence[object]
) -> psycopg.Cursor[DictRow]:
    """Run ``query`` and read its rows as dicts (column name to value)."""
    return conn.cursor(row_factory=dict_row).execute(query, params)


def _payload_keys(payload: str) -> list[str] | None:
    """The key values in a notification from the receiver's trigger, or None."""
    try:
        data: object = json.loads(payload)
    except ValueError:
        return None
    keys = cast("dict[str, object]", data).get("k") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        return None
    items = cast("list[object]", keys)
    out = [k for k in items if isinstance(k, str)]
    return out if len(out) == len(items) else None
