"""The system database interface, with the SQL both backends share.

A backend supplies connections (:meth:`SystemDatabase._cursor` for one autocommitted
statement, :meth:`SystemDatabase._transaction` for several), its dialect's few differences
(placeholders, row locking, queue locking) and its DDL runner. Everything else, including
all the SQL, lives here once.
"""

import functools
import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from dbos_sdk._sysdb._held import HeldSteps
from dbos_sdk._sysdb._rows import StepRow
from dbos_sdk._sysdb._schema import MIGRATIONS, SCHEMA_VERSION
from dbos_sdk.errors import DBOSConflictingWorkflowError, DBOSSchemaVersionError

logger = logging.getLogger("dbos_sdk")

INTERNAL_QUEUE = "_dbos_internal_queue"
"""Resumed and forked workflows are enqueued here; every executor drains it."""

TERMINAL_STATUSES = frozenset({"SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})

_WS_COLUMNS = (
    "workflow_uuid, status, name, class_name, config_name, inputs, output, error, serialization, "
    "executor_id, application_version, queue_name, priority, authenticated_user, assumed_role, "
    "authenticated_roles, created_at, updated_at, started_at, completed_at, timeout_ms, "
    "deadline_epoch_ms, recovery_attempts, forked_from"
)
_STEP_COLUMNS = (
    "function_id, function_name, output, error, child_workflow_id, serialization, "
    "started_at, completed_at"
)


@functools.lru_cache(maxsize=64)
def _insert_steps_sql(ops: str, n: int) -> str:
    """INSERT of ``n`` step records that skips positions recorded already."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * n)
    return (
        f"INSERT INTO {ops} (workflow_uuid, {_STEP_COLUMNS}) VALUES {values} "
        "ON CONFLICT (workflow_uuid, function_id) DO NOTHING"
    )


def _row_params(workflow_id: str, r: StepRow) -> tuple[Any, ...]:
    return (
        workflow_id,
        r.function_id,
        r.function_name,
        r.output,
        r.error,
        r.child_workflow_id,
        r.serialization,
        r.started_at,
        r.completed_at,
    )


def _step_params(workflow_id: str, rows: Sequence[StepRow]) -> tuple[Any, ...]:
    if len(rows) == 1:
        return _row_params(workflow_id, rows[0])
    return tuple(p for r in rows for p in _row_params(workflow_id, r))


def _pair_params(pairs: Sequence[tuple[str, StepRow]]) -> tuple[Any, ...]:
    return tuple(p for workflow_id, r in pairs for p in _row_params(workflow_id, r))


def now_ms() -> int:
    return int(time.time() * 1000)


@runtime_checkable
class Cursor(Protocol):
    """The part of a DB-API cursor the SQL here uses (sqlite3 and psycopg both fit)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


@runtime_checkable
class Executor(Protocol):
    """Runs one statement and returns the cursor to read its result from."""

    def __call__(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...


@dataclass(frozen=True, slots=True)
class WorkflowRow:
    """One row of the workflow status table."""

    workflow_id: str
    status: str
    name: str
    class_name: str | None
    config_name: str | None
    inputs: str | None
    output: str | None
    error: str | None
    serialization: str
    executor_id: str | None
    application_version: str
    queue_name: str | None
    priority: int
    authenticated_user: str | None
    assumed_role: str | None
    authenticated_roles: list[str] | None
    created_at: int
    updated_at: int
    started_at: int | None
    completed_at: int | None
    timeout_ms: int | None
    deadline_epoch_ms: int | None
    recovery_attempts: int
    forked_from: str | None

    @staticmethod
    def from_db(row: Sequence[Any]) -> "WorkflowRow":
        values = list(row)
        roles = values[15]
        values[15] = json.loads(roles) if roles is not None else None
        return WorkflowRow(*values)


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """What a dequeue must respect; ``local_free`` is what this executor may still start."""

    name: str
    concurrency: int | None
    local_free: int | None
    limit: int | None
    period_ms: int | None
    priority_enabled: bool


@dataclass(frozen=True, slots=True)
class WorkflowFilter:
    workflow_ids: Sequence[str] | None = None
    status: Sequence[str] | None = None
    name: str | None = None
    queue_name: str | None = None
    executor_id: str | None = None
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    limit: int | None = None
    offset: int | None = None
    newest_first: bool = False


@dataclass(frozen=True, slots=True)
class DispatchStateRow:
    service: str
    workflow_fn_name: str
    key: str
    value: str | None
    update_time: float | None
    update_seq: int | None


class SystemDatabase(ABC):
    """Durable record of workflows, steps, queues and receiver state."""

    backend: str
    url_for_messages: str

    def __init__(self) -> None:
        self._round_trips = 0
        self._rt_lock = threading.Lock()
        self.held_steps = HeldSteps(self._write_held_rows)
        names = self._table_names()
        self._ws = names["ws"]
        self._ops = names["ops"]
        self._kv = names["kv"]

    # --- what a backend supplies -------------------------------------------------------

    @abstractmethod
    def _table_names(self) -> dict[str, str]:
        """Table names for ``ws``, ``ops``, ``kv``, ``ver`` and the index prefix ``ix``."""

    @abstractmethod
    def _cursor(self) -> AbstractContextManager[Executor]:
        """An executor whose every statement commits on its own."""

    def _lazy_cursor(self) -> AbstractContextManager[Executor]:
        """Like :meth:`_cursor`, for writes that a crash of the database server may lose
        without losing anything: a workflow's outcome (every step is durable already, so
        recovery recomputes it, the same, by replay), with any step records held back
        (their outcomes are durable in their datasources). Where the backend allows it,
        these commit without waiting for the disk; the next ordinary commit of any session
        flushes them."""
        return self._cursor()

    @abstractmethod
    def _transaction(self, *, lock_queue: str | None = None) -> AbstractContextManager[Executor]:
        """An executor whose statements commit together; ``lock_queue`` serializes dequeuers
        of that queue across processes where the backend has several."""

    @abstractmethod
    def _migrate_locked(self, run: Callable[[Executor], None]) -> None:
        """Call ``run(executor)`` with migrations serialized across processes."""

    @abstractmethod
    def close(self) -> None:
        """Release every connection."""

    skip_locked: str = ""
    """Row-locking clause for the dequeue select (empty where one writer exists)."""
    no_limit: str = "-1"
    """A LIMIT that limits nothing (OFFSET needs a LIMIT in SQLite)."""

    def _count(self, n: int = 1) -> None:
        with self._rt_lock:
            self._round_trips += n

    @property
    def round_trips(self) -> int:
        """Statements sent so far (BEGIN and COMMIT of a transaction count too)."""
        return self._round_trips

    # --- schema ------------------------------------------------------------------------

    def migrate(self) -> int:
        """Create or upgrade the schema; return the version it is now at."""
        names = self._table_names()

        def run(ex: Executor) -> None:
            ex(f"CREATE TABLE IF NOT EXISTS {names['ver']} (version INTEGER NOT NULL)")
            row = ex(f"SELECT version FROM {names['ver']}").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise DBOSSchemaVersionError(
                    f"The system database at {self.url_for_messages} is at schema version "
                    f"{current}, newer than this dbos-sdk understands ({SCHEMA_VERSION}). "
                    "Upgrade dbos-sdk, or point system_database_url at another database."
                )
            for version in range(current, SCHEMA_VERSION):
                for stmt in MIGRATIONS[version]:
                    ex(stmt.format(**names))
            if row is None:
                ex(f"INSERT INTO {names['ver']} (version) VALUES (?)", (SCHEMA_VERSION,))
            elif current != SCHEMA_VERSION:
                ex(f"UPDATE {names['ver']} SET version = ?", (SCHEMA_VERSION,))

        self._migrate_locked(run)
        return SCHEMA_VERSION

    # --- workflows ---------------------------------------------------------------------

    def insert_workflow(self, row: WorkflowRow) -> WorkflowRow | None:
        """Insert a new workflow; on an existing ID insert nothing and return the stored row."""
        roles = json.dumps(row.authenticated_roles) if row.authenticated_roles is not None else None
        with self._cursor() as ex:
            cur = ex(
                f"INSERT INTO {self._ws} ({_WS_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (workflow_uuid) DO NOTHING RETURNING workflow_uuid",
                (
                    row.workflow_id,
                    row.status,
                    row.name,
                    row.class_name,
                    row.config_name,
                    row.inputs,
                    row.output,
                    row.error,
                    row.serialization,
                    row.executor_id,
                    row.application_version,
                    row.queue_name,
                    row.priority,
                    row.authenticated_user,
                    row.assumed_role,
                    roles,
                    row.created_at,
                    row.updated_at,
                    row.started_at,
                    row.completed_at,
                    row.timeout_ms,
                    row.deadline_epoch_ms,
                    row.recovery_attempts,
                    row.forked_from,
                ),
            )
            if cur.fetchone() is not None:
                return None
            existing = ex(
                f"SELECT {_WS_COLUMNS} FROM {self._ws} WHERE workflow_uuid = ?", (row.workflow_id,)
            ).fetchone()
        assert existing is not None, "a conflicting row cannot vanish: rows are never deleted"
        return WorkflowRow.from_db(existing)

    def finish_workflow(
        self, workflow_id: str, status: str, output: str | None, error: str | None
    ) -> bool:
        """Record a PENDING workflow's outcome; False if it is no longer PENDING (cancelled)."""
        t = now_ms()
        held = self.held_steps.take(workflow_id)
        # Held step records go in the same statement (a data-modifying WITH: only backends
        # that hold records, i.e. Postgres, get here with some), so the outcome is never
        # durable without them.
        prefix = f"WITH held AS ({_insert_steps_sql(self._ops, len(held))}) " if held else ""
        try:
            with self._lazy_cursor() as ex:
                cur = ex(
                    f"{prefix}UPDATE {self._ws} SET status = ?, output = ?, error = ?, "
                    "updated_at = ?, completed_at = ? WHERE workflow_uuid = ? AND status = 'PENDING'",
                    (*_step_params(workflow_id, held), status, output, error, t, t, workflow_id),
                )
                return cur.rowcount > 0
        except BaseException:
            self.held_steps.put_back(workflow_id, held)
            raise

    def get_workflow(self, workflow_id: str) -> WorkflowRow | None:
        with self._cursor() as ex:
            row = ex(
                f"SELECT {_WS_COLUMNS} FROM {self._ws} WHERE workflow_uuid = ?", (workflow_id,)
            ).fetchone()
        return WorkflowRow.from_db(row) if row is not None else None

    def get_statuses(self, workflow_ids: Sequence[str]) -> dict[str, str]:
        if not workflow_ids:
            return {}
        marks = ", ".join("?" for _ in workflow_ids)
        with self._cursor() as ex:
            rows = ex(
                f"SELECT workflow_uuid, status FROM {self._ws} WHERE workflow_uuid IN ({marks})",
                tuple(workflow_ids),
            ).fetchall()
        return {r[0]: r[1] for r in rows}

    def list_workflows(self, f: WorkflowFilter) -> list[WorkflowRow]:
        where: list[str] = []
        params: list[Any] = []
        if f.workflow_ids is not None:
            if not f.workflow_ids:
                return []
            where.append(f"workflow_uuid IN ({', '.join('?' for _ in f.workflow_ids)})")
            params.extend(f.workflow_ids)
        if f.status is not None:
            if not f.status:
                return []
            where.append(f"status IN ({', '.join('?' for _ in f.status)})")
            params.extend(f.status)
        for column, value in (
            ("name", f.name),
            ("queue_name", f.queue_name),
            ("executor_id", f.executor_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if f.start_time_ms is not None:
            where.append("created_at >= ?")
            params.append(f.start_time_ms)
        if f.end_time_ms is not None:
            where.append("created_at <= ?")
            params.append(f.end_time_ms)
        sql = f"SELECT {_WS_COLUMNS} FROM {self._ws}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        order = "DESC" if f.newest_first else "ASC"
        sql += f" ORDER BY created_at {order}, workflow_uuid {order}"
        if f.limit is not None:
            sql += " LIMIT ?"
            params.append(f.limit)
        elif f.offset is not None:
            sql += f" LIMIT {self.no_limit}"
        if f.offset is not None:
            sql += " OFFSET ?"
            params.append(f.offset)
        with self._cursor() as ex:
            rows = ex(sql, tuple(params)).fetchall()
        return [WorkflowRow.from_db(r) for r in rows]

    def pending_workflows(self, executor_id: str) -> list[WorkflowRow]:
        """This executor's PENDING workflows, oldest first: what recovery resumes."""
        with self._cursor() as ex:
            rows = ex(
                f"SELECT {_WS_COLUMNS} FROM {self._ws} WHERE status = 'PENDING' AND "
                "executor_id = ? ORDER BY created_at",
                (executor_id,),
            ).fetchall()
        return [WorkflowRow.from_db(r) for r in rows]

    def note_recovery_attempt(self, workflow_id: str, max_attempts: int) -> bool | None:
        """Count one recovery of a PENDING workflow: True to run it; False past the limit
        (it is marked so); None if it is no longer PENDING (it finished meanwhile)."""
        with self._transaction() as ex:
            row = ex(
                f"UPDATE {self._ws} SET recovery_attempts = recovery_attempts + 1 "
                "WHERE workflow_uuid = ? AND status = 'PENDING' RETURNING recovery_attempts",
                (workflow_id,),
            ).fetchone()
            if row is None:
                return None
            if int(row[0]) > max_attempts:
                ex(
                    f"UPDATE {self._ws} SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', "
                    "updated_at = ? WHERE workflow_uuid = ?",
                    (now_ms(), workflow_id),
                )
                return False
        return True

    def cancel_workflow(self, workflow_id: str) -> str | None:
        """Mark a workflow CANCELLED unless it already ended; return its status (None: absent)."""
        with self._transaction() as ex:
            self._write_held(ex, workflow_id)
            ex(
                f"UPDATE {self._ws} SET status = 'CANCELLED', updated_at = ? "
                "WHERE workflow_uuid = ? AND status IN ('PENDING', 'ENQUEUED')",
                (now_ms(), workflow_id),
            )
            row = ex(f"SELECT status FROM {self._ws} WHERE workflow_uuid = ?", (workflow_id,))
            found = row.fetchone()
        return str(found[0]) if found is not None else None

    def resume_workflow(self, workflow_id: str) -> str | None:
        """Enqueue a cancelled or failed-by-recovery workflow on the internal queue again."""
        with self._transaction() as ex:
            self._write_held(ex, workflow_id)
            ex(
                f"UPDATE {self._ws} SET status = 'ENQUEUED', queue_name = ?, executor_id = NULL, "
                "started_at = NULL, deadline_epoch_ms = NULL, timeout_ms = NULL, "
                "recovery_attempts = 0, updated_at = ? WHERE workflow_uuid = ? "
                "AND status IN ('CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', 'ENQUEUED')",
                (INTERNAL_QUEUE, now_ms(), workflow_id),
            )
            found = ex(
                f"SELECT status FROM {self._ws} WHERE workflow_uuid = ?", (workflow_id,)
            ).fetchone()
        return str(found[0]) if found is not None else None

    def fork_workflow(
        self, workflow_id: str, start_step: int, new_id: str, application_version: str | None
    ) -> bool:
        """Copy a workflow under ``new_id`` with its steps before ``start_step``, enqueued on
        the internal queue; False if the original does not exist."""
        t = now_ms()
        with self._transaction() as ex:
            taken = ex(f"SELECT name FROM {self._ws} WHERE workflow_uuid = ?", (new_id,)).fetchone()
            if taken is not None:
                raise DBOSConflictingWorkflowError(
                    f"Cannot fork {workflow_id!r} as {new_id!r}: workflow {new_id!r} already "
                    f"exists (it runs {taken[0]!r}); choose another new_workflow_id."
                )
            cur = ex(
                f"INSERT INTO {self._ws} ({_WS_COLUMNS}) SELECT ?, 'ENQUEUED', name, class_name, "
                "config_name, inputs, NULL, NULL, serialization, NULL, COALESCE(?, "
                "application_version), ?, priority, authenticated_user, assumed_role, "
                "authenticated_roles, ?, ?, NULL, NULL, NULL, NULL, 0, workflow_uuid "
                f"FROM {self._ws} WHERE workflow_uuid = ?",
                (new_id, application_version, INTERNAL_QUEUE, t, t, workflow_id),
            )
            if cur.rowcount == 0:
                return False
            self._write_held(ex, workflow_id)
            ex(
                f"INSERT INTO {self._ops} (workflow_uuid, {_STEP_COLUMNS}) SELECT ?, "
                f"{_STEP_COLUMNS} FROM {self._ops} WHERE workflow_uuid = ? AND function_id < ?",
                (new_id, workflow_id, start_step),
            )
        return True

    # --- steps -------------------------------------------------------------------------

    def record_step(
        self, workflow_id: str, step: StepRow, *, recorded_elsewhere: bool = False
    ) -> StepRow | None:
        """Record a step; if another execution recorded this position first, return its row.

        ``recorded_elsewhere``: the step's outcome is durably committed in a datasource
        already (its completion checkpoint). Where a round trip costs (``holds_steps``),
        the record is then held back (see ``_held``) and written in the same statement as
        the workflow's next write here -- its next step's record or its outcome -- or by
        a flusher thread after ``held_steps.hold_s``. A crash before that loses nothing:
        replay finds the outcome in the datasource. This process's reads include it.
        """
        if recorded_elsewhere and self.holds_steps and self.held_steps.hold(workflow_id, step):
            return None
        held = self.held_steps.take(workflow_id)
        rows = [*held, step] if held else [step]
        try:
            with self._lazy_cursor() if recorded_elsewhere else self._cursor() as ex:
                cur = ex(
                    f"{_insert_steps_sql(self._ops, len(rows))} RETURNING function_id",
                    _step_params(workflow_id, rows),
                )
                if step.function_id in {r[0] for r in cur.fetchall()}:
                    return None
                found = ex(
                    f"SELECT {_STEP_COLUMNS} FROM {self._ops} WHERE workflow_uuid = ? "
                    "AND function_id = ?",
                    (workflow_id, step.function_id),
                ).fetchone()
        except BaseException:
            self.held_steps.put_back(workflow_id, held)
            raise
        return StepRow(*found)

    def get_steps(self, workflow_id: str) -> list[StepRow]:
        """The workflow's recorded steps in order, including records held back here."""
        with self._cursor() as ex:
            rows = ex(
                f"SELECT {_STEP_COLUMNS} FROM {self._ops} WHERE workflow_uuid = ? "
                "ORDER BY function_id",
                (workflow_id,),
            ).fetchall()
        return self._with_held(workflow_id, [StepRow(*r) for r in rows])

    # --- step records held back (see record_step) ----------------------------------------

    holds_steps: bool = False
    """Whether records of steps recorded elsewhere are held back for the workflow's next
    write (a backend where every statement is a network round trip)."""

    def _with_held(self, workflow_id: str, recorded: list[StepRow]) -> list[StepRow]:
        held = self.held_steps.peek(workflow_id)
        if not held:
            return recorded
        ids = {r.function_id for r in recorded}
        merged = recorded + [r for r in held if r.function_id not in ids]
        return sorted(merged, key=lambda r: r.function_id)

    def _write_held(self, ex: Executor, workflow_id: str) -> None:
        """Write the workflow's held records with ``ex`` (a transaction about to change the
        workflow), so that what it does is never durable without them."""
        rows = self.held_steps.take(workflow_id)
        if rows:
            ex(_insert_steps_sql(self._ops, len(rows)), _step_params(workflow_id, rows))

    def _write_held_rows(self, pairs: Sequence[tuple[str, StepRow]]) -> None:
        """Write held records of any workflows in one statement (the flusher's write)."""
        with self._lazy_cursor() as ex:
            ex(_insert_steps_sql(self._ops, len(pairs)), _pair_params(pairs))

    def write_all_held(self) -> None:
        """Stop holding records and write those held (at shutdown; best effort, since each
        outcome is also durable in its datasource)."""
        left = self.held_steps.close()
        if not left:
            return
        try:
            self._write_held_rows(left)
        except Exception as exc:
            logger.warning(
                "Could not write %d held step record(s) at shutdown: %r; their datasources "
                "hold the outcomes, and replay finds them there.",
                len(left),
                exc,
            )

    def get_steps_of(self, workflow_ids: Sequence[str]) -> dict[str, list[StepRow]]:
        """The recorded steps of several workflows (in order), in one statement: what a
        dequeued batch needs before it starts."""
        if not workflow_ids:
            return {}
        marks = ", ".join("?" for _ in workflow_ids)
        with self._cursor() as ex:
            rows = ex(
                f"SELECT workflow_uuid, {_STEP_COLUMNS} FROM {self._ops} "
                f"WHERE workflow_uuid IN ({marks}) ORDER BY workflow_uuid, function_id",
                tuple(workflow_ids),
            ).fetchall()
        steps: dict[str, list[StepRow]] = {wfid: [] for wfid in workflow_ids}
        for r in rows:
            steps[r[0]].append(StepRow(*r[1:]))
        return {wfid: self._with_held(wfid, found) for wfid, found in steps.items()}

    # --- queues ------------------------------------------------------------------------

    def dequeue(
        self, q: QueueLimits, executor_id: str, batch: int, names: Sequence[str]
    ) -> list[WorkflowRow]:
        """Move up to ``batch`` ENQUEUED workflows of ``q`` to PENDING for this executor,
        within the queue's global concurrency, this executor's share and the rate limit.
        Only workflows named in ``names`` (those this process registered) are taken: a
        workflow no process here can run is left for an executor that can."""
        n = batch if q.local_free is None else min(batch, q.local_free)
        if n <= 0 or not names:
            return []
        name_marks = ", ".join("?" for _ in names)
        order = "priority ASC, created_at ASC" if q.priority_enabled else "created_at ASC"
        needs_lock = q.concurrency is not None or q.limit is not None
        with self._transaction(lock_queue=q.name if needs_lock else None) as ex:
            if q.concurrency is not None:
                running = ex(
                    f"SELECT COUNT(*) FROM {self._ws} WHERE queue_name = ? AND status = 'PENDING'",
                    (q.name,),
                ).fetchone()
                n = min(n, q.concurrency - int(running[0]))
            # Read the clock after the count: a workflow whose completion freed a slot
            # committed its completed_at before, so recorded intervals never overlap more
            # than the limit allows.
            t = now_ms()
            if q.limit is not None and q.period_ms is not None:
                recent = ex(
                    f"SELECT COUNT(*) FROM {self._ws} WHERE queue_name = ? AND "
                    "status <> 'ENQUEUED' AND started_at > ?",
                    (q.name, t - q.period_ms),
                ).fetchone()
                n = min(n, q.limit - int(recent[0]))
            if n <= 0:
                return []
            rows = ex(
                f"UPDATE {self._ws} SET status = 'PENDING', executor_id = ?, started_at = ?, "
                "updated_at = ? WHERE workflow_uuid IN (SELECT workflow_uuid FROM "
                f"{self._ws} WHERE queue_name = ? AND status = 'ENQUEUED' AND name IN "
                f"({name_marks}) ORDER BY {order} LIMIT ?{self.skip_locked}) "
                f"RETURNING {_WS_COLUMNS}",
                (executor_id, t, t, q.name, *names, n),
            ).fetchall()
        return [WorkflowRow.from_db(r) for r in rows]

    # --- receiver state ----------------------------------------------------------------

    def upsert_dispatch_state(self, s: DispatchStateRow) -> DispatchStateRow:
        """Store ``s`` under the versioning rules of DBOS.upsert_event_dispatch_state and
        return what is stored afterwards."""
        # A stored row is replaced when it was never versioned, when the write is
        # unversioned (last write wins), or when a given version is greater than the
        # stored one (either, when both are given). Each stored version only grows: it
        # becomes the greater of the stored and the written one (NULL meaning "none";
        # spelled out because SQLite's MAX() returns NULL if either side is NULL).
        kv = self._kv

        def greatest(col: str) -> str:
            return (
                f"CASE WHEN excluded.{col} IS NULL THEN {kv}.{col} "
                f"WHEN {kv}.{col} IS NULL OR excluded.{col} > {kv}.{col} THEN excluded.{col} "
                f"ELSE {kv}.{col} END"
            )

        with self._transaction() as ex:
            ex(
                f"INSERT INTO {self._kv} (service_name, workflow_fn_name, key, value, "
                "update_time, update_seq) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (service_name, workflow_fn_name, key) DO UPDATE SET "
                "value = excluded.value, "
                f"update_time = {greatest('update_time')}, "
                f"update_seq = {greatest('update_seq')} WHERE "
                f"({self._kv}.update_time IS NULL AND {self._kv}.update_seq IS NULL) OR "
                "(excluded.update_time IS NULL AND excluded.update_seq IS NULL) OR "
                f"(excluded.update_time > {self._kv}.update_time) OR "
                f"(excluded.update_seq > {self._kv}.update_seq) OR "
                f"({self._kv}.update_time IS NULL AND excluded.update_time IS NOT NULL "
                "AND excluded.update_seq IS NULL) OR "
                f"({self._kv}.update_seq IS NULL AND excluded.update_seq IS NOT NULL "
                "AND excluded.update_time IS NULL)",
                (s.service, s.workflow_fn_name, s.key, s.value, s.update_time, s.update_seq),
            )
            row = ex(
                f"SELECT service_name, workflow_fn_name, key, value, update_time, update_seq "
                f"FROM {self._kv} WHERE service_name = ? AND workflow_fn_name = ? AND key = ?",
                (s.service, s.workflow_fn_name, s.key),
            ).fetchone()
        return _dispatch_row(row)

    def get_dispatch_state(
        self, service: str, workflow_fn_name: str, key: str
    ) -> DispatchStateRow | None:
        with self._cursor() as ex:
            row = ex(
                f"SELECT service_name, workflow_fn_name, key, value, update_time, update_seq "
                f"FROM {self._kv} WHERE service_name = ? AND workflow_fn_name = ? AND key = ?",
                (service, workflow_fn_name, key),
            ).fetchone()
        return _dispatch_row(row) if row is not None else None


def _dispatch_row(row: Sequence[Any]) -> DispatchStateRow:
    t = row[4]
    seq = row[5]
    return DispatchStateRow(
        row[0],
        row[1],
        row[2],
        row[3],
        float(t) if t is not None else None,
        int(seq) if seq is not None else None,
    )
