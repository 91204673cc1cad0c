"""What the demo's parent watches with: the app processes it runs, the system database
(through the public DBOS API) and the app's SQLite file."""

import contextlib
import os
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

import attrs

from dbos_sdk import DBOS, DBOSConfig, StepInfo, WorkflowStatus, scheduler
from dbos_sqlite_datasource import SQLITE_CHECKPOINT_TABLE

from ._protocol import SETTINGS_ENV, AppSettings, DemoError, Event

CHILD_TIMEOUT_S = 60.0
"""The longest the parent waits for an app process to do what it expects."""


class Child:
    """One run of the app (``python -m dbos_sdk_demo``) in a child process. A thread reads
    its output; :meth:`next` hands it over line by line and keeps track of what it did."""

    settings: AppSettings
    proc: "subprocess.Popen[str]"
    started_at: float
    launched_at: float | None
    """When the app's DBOS.launch() returned (POSIX time)."""
    ran_steps: list[int]
    """The steps of the order workflow whose function ran in this process, in order."""
    ticks: list[Event]
    paused: bool
    result: str | None

    def __init__(self, settings: AppSettings) -> None:
        env = {**os.environ, SETTINGS_ENV: settings.to_json(), "PYTHONUNBUFFERED": "1"}
        self.settings = settings
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dbos_sdk_demo"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.launched_at = None
        self.ran_steps = []
        self.ticks = []
        self.paused = False
        self.result = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"demo-read-{self.pid}", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        try:
            for line in stream:
                self._lines.put(line.rstrip("\n"))
        except (OSError, ValueError):  # closed by stop()
            pass
        self._lines.put(None)

    def next(self, deadline: float) -> Event | str | None:
        """The next event (recorded here) or other line the app printed; None once its
        output ended. TimeoutError if nothing comes before ``deadline`` (monotonic)."""
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError from None
        if line is None:
            return None
        event = Event.parse(line)
        if event is None:
            return line
        if event.kind == "launched":
            self.launched_at = event.at
        elif event.kind == "tick":
            self.ticks.append(event)
        elif event.workflow_id != self.settings.workflow_id:
            pass  # another workflow it found enqueued in this database: not recorded
        elif event.kind == "step" and event.step is not None:
            self.ran_steps.append(event.step)
        elif event.kind == "paused":
            self.paused = True
        elif event.kind == "result":
            self.result = event.result
        return event

    def kill(self) -> None:
        """SIGKILL (TerminateProcess on Windows): no shutdown, no clean-up."""
        self.proc.kill()
        self.proc.wait(timeout=CHILD_TIMEOUT_S)

    def finish(self) -> int:
        """Close the app's stdin (it then shuts DBOS down and exits); its exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout=CHILD_TIMEOUT_S)

    def stop(self) -> None:
        """Kill the process if it still runs (the parent failed or was interrupted)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class Observer:
    """Reads the system database through the public API: a DBOS runtime launched in the
    parent under an executor ID of its own, with nothing registered, so it runs nothing
    (no recovery finds work of its executor, no queue has a workflow it could run)."""

    def __init__(self, url: str, schema: str, run: str) -> None:
        self._config = DBOSConfig(
            "dbos-sdk-demo-observer",
            system_database_url=url,
            postgres_schema=schema,
            executor_id=f"demo-observer-{run}",
            sys_db_pool_size=2,
        )

    def __enter__(self) -> Self:
        DBOS(self._config)
        DBOS.launch()  # also creates or migrates the system database, before the app runs
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        DBOS.shutdown()

    def status(self, workflow_id: str) -> WorkflowStatus | None:
        return DBOS.get_workflow_status(workflow_id)

    def steps(self, workflow_id: str) -> list[StepInfo]:
        return DBOS.get_workflow_steps(workflow_id)

    def workflows(self, name: str) -> list[WorkflowStatus]:
        """Every workflow of that registered name, oldest first."""
        return DBOS.list_workflows(name=name)

    def last_tick(self, workflow_name: str) -> datetime | None:
        """The last tick the scheduler dispatched for that workflow (its dispatch state)."""
        state = DBOS.get_event_dispatch_state(scheduler.SERVICE, workflow_name, scheduler.STATE_KEY)
        if state is None or state.update_time is None:
            return None
        return datetime.fromtimestamp(state.update_time, UTC)


@attrs.frozen(kw_only=True)
class OrderRows:
    """What the app's SQLite file holds for one order."""

    rows: int
    """Rows of the order in the ``orders`` table."""
    written_by: tuple[int, ...]
    """The process that inserted each of them."""
    checkpoints: int
    """Completion checkpoints of the transaction step in the datasource's table."""


def read_order(path: Path, order_id: str, workflow_id: str, step: int) -> OrderRows:
    """Read the order's rows and its transaction's completion checkpoint (read-only)."""
    if not path.is_file():
        return OrderRows(rows=0, written_by=(), checkpoints=0)
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        pids = [
            int(r[0])
            for r in conn.execute(
                "SELECT recorded_by_pid FROM orders WHERE order_id = ? ORDER BY rowid",
                (order_id,),
            )
        ]
        checkpoints = conn.execute(
            f"SELECT COUNT(*) FROM {SQLITE_CHECKPOINT_TABLE} "
            "WHERE workflow_id = ? AND function_num = ?",
            (workflow_id, step),
        ).fetchone()
    except sqlite3.Error as exc:
        raise DemoError(f"cannot read the app database {path}: {exc}") from exc
    finally:
        conn.close()
    return OrderRows(rows=len(pids), written_by=tuple(pids), checkpoints=int(checkpoints[0]))
