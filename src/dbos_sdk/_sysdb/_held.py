"""Step records held back for a short while (see ``SystemDatabase.record_step``).

A record whose outcome is durable elsewhere (a datasource's completion checkpoint) waits
here to be written in the same statement as its workflow's next write -- usually its
next step's record or its outcome, a fraction of a millisecond later -- saving a round
trip. A flusher thread writes whatever is still held after ``hold_s``, so other processes
see every record soon, whatever the workflow does next.

Rows may be written twice (by the flusher and by the workflow's next write, both taking
them at once): every writer inserts them with ``ON CONFLICT DO NOTHING``.
"""

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from dbos_sdk._sysdb._rows import StepRow

logger = logging.getLogger("dbos_sdk")

HOLD_S: Final = 0.01
"""How long a record waits for its workflow's next write before the flusher writes it."""
RETRY_S: Final = 1.0
"""How long the flusher waits after a failed write before it tries those records again."""
LINGER_S: Final = 1.0
"""How long the flusher keeps polling every ``hold_s`` once nothing is held, before it
sleeps until the next hold wakes it: under steady load a hold never wakes it (a thread
switch per transaction), and an idle process does not poll."""

WriteHeld = Callable[[Sequence[tuple[str, StepRow]]], None]


@dataclass(slots=True, eq=False)
class _Entry:
    rows: list[StepRow]
    due: float
    """Monotonic time at which the flusher writes the rows."""


class HeldSteps:
    """The held records of one system database, by workflow, and their flusher."""

    def __init__(self, write: WriteHeld, hold_s: float = HOLD_S) -> None:
        self.hold_s = hold_s
        self._write = write
        self._by_workflow: dict[str, _Entry] = {}
        self._cond = threading.Condition()
        self._flusher: threading.Thread | None = None
        self._sleeping = False
        """The flusher waits for a hold to wake it (it has been idle for LINGER_S)."""
        self._closed = False

    def hold(self, workflow_id: str, row: StepRow) -> bool:
        """Hold ``row``; False (nothing held) once closed: write it now instead."""
        with self._cond:
            if self._closed:
                return False
            entry = self._by_workflow.get(workflow_id)
            if entry is None:
                self._add(workflow_id, [row], self.hold_s)
            else:
                entry.rows.append(row)
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="dbos-held-step-records", daemon=True
                )
                self._flusher.start()
        return True

    def take(self, workflow_id: str) -> list[StepRow]:
        """Remove and return the workflow's held rows (the caller writes them)."""
        if not self._by_workflow:  # the common case, without the lock
            return []
        with self._cond:
            entry = self._by_workflow.pop(workflow_id, None)
        return entry.rows if entry is not None else []

    def put_back(self, workflow_id: str, rows: Sequence[StepRow]) -> None:
        """Hold again rows whose write failed, ahead of any held since."""
        if not rows:
            return
        with self._cond:
            entry = self._by_workflow.get(workflow_id)
            if entry is None:
                self._add(workflow_id, list(rows), RETRY_S)
            else:
                entry.rows[:0] = rows

    def _add(self, workflow_id: str, rows: list[StepRow], after_s: float) -> None:
        """(With the lock held.) A new entry, due ``after_s`` from now; wakes a sleeping
        flusher (one that polls will find it)."""
        self._by_workflow[workflow_id] = _Entry(rows, time.monotonic() + after_s)
        if self._sleeping:
            self._sleeping = False
            self._cond.notify()

    def peek(self, workflow_id: str) -> list[StepRow]:
        """The workflow's held rows, left held."""
        if not self._by_workflow:
            return []
        with self._cond:
            entry = self._by_workflow.get(workflow_id)
            return list(entry.rows) if entry is not None else []

    def close(self) -> list[tuple[str, StepRow]]:
        """Stop the flusher; return every row still held (the caller writes them)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            flusher = self._flusher
        if flusher is not None:
            flusher.join()
        with self._cond:
            left, self._by_workflow = self._by_workflow, {}
        return [(wfid, row) for wfid, entry in left.items() for row in entry.rows]

    def _due(self) -> list[tuple[str, _Entry, list[StepRow]]] | None:
        """Wait until some rows are due; return them (None once closed)."""
        with self._cond:
            idle_since: float | None = None
            while not self._closed:
                now = time.monotonic()
                due = [(w, e, list(e.rows)) for w, e in self._by_workflow.items() if e.due <= now]
                if due:
                    return due
                if self._by_workflow:
                    idle_since = None
                    self._cond.wait(min(e.due for e in self._by_workflow.values()) - now)
                    continue
                if idle_since is None:
                    idle_since = now
                if now - idle_since < LINGER_S:
                    self._cond.wait(self.hold_s)  # poll: holds do not wake us meanwhile
                else:
                    self._sleeping = True
                    self._cond.wait()
            return None

    def _flush_loop(self) -> None:
        while (due := self._due()) is not None:
            try:
                self._write([(wfid, row) for wfid, _, rows in due for row in rows])
            except Exception as exc:
                logger.warning(
                    "Could not write %d held step record(s): %r; retrying in %gs (each "
                    "outcome is durable in its datasource meanwhile).",
                    sum(len(rows) for _, _, rows in due),
                    exc,
                    RETRY_S,
                )
                with self._cond:
                    for _, entry, _ in due:
                        entry.due = time.monotonic() + RETRY_S
                continue
            with self._cond:
                for wfid, entry, rows in due:
                    if self._by_workflow.get(wfid) is entry:
                        written = {id(r) for r in rows}
                        entry.rows = [r for r in entry.rows if id(r) not in written]
                        if not entry.rows:
                            del self._by_workflow[wfid]
