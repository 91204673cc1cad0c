"""``dbos-sdk demo``: watch a workflow, a transaction and a schedule survive a SIGKILL.

What happens (the *parent* is the process running ``dbos-sdk demo``):

1. The parent starts the app (:mod:`dbos_sdk_demo.app`) in a child process. It launches
   DBOS, starts ``process_order`` (five steps; step 3 is a transaction on the app's own
   SQLite file) and serves its schedule, a tick every 2 seconds.
2. Every step and tick tells the parent, on stdout, when it runs. Once the app is inside
   step 4 and has run a tick, the parent checks the checkpoints and the order row, and
   SIGKILLs the app (no shutdown, no clean-up); then it waits until two ticks fell due
   with no app running.
3. The parent starts the app again in a fresh process with the same executor ID. Its
   ``DBOS.launch()`` recovers the PENDING workflow (steps 1-3 replay their recorded
   outputs without running; step 4, killed before its checkpoint, runs again) and the
   scheduler runs the missed ticks, once each.
4. The parent reads the system database (through the public DBOS API) and the app's SQLite
   file, tells what ran where, and checks it: the demo exits 1 if durability did not hold.

To extend the demo, add a step (or a transaction) to the app, call ``step_begins`` first
thing in it and call it from ``process_order``: the narration and the checks follow.
"""

import json
import os
import shlex
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import attrs

from dbos_sdk import StepInfo

from ._instruments import CHILD_TIMEOUT_S, Child, Observer, read_order
from ._protocol import RECORD_ORDER, TICK_EVERY_S, AppSettings, DemoError, Event
from ._report import StepRow, TickRow, check_order, check_steps, check_ticks, clip, ranges, table

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
PAUSE_AT_STEP: Final = 4
"""The step inside which the first process is killed: after the transaction committed."""
MISSED_TICKS: Final = 2
"""How many ticks fall due while no app process runs."""
SETTLE_S: Final = 0.5
"""The app is not killed this close to its next tick (so that no tick is half-started)."""
STEPS_WAIT_S: Final = 5.0
"""How long the steps before the pause may take to appear in the system database."""
RESTART_MARGIN_S: Final = 0.3
"""The restart comes this long after the last missed tick fell due."""
LATE_S: Final = 0.5
"""A tick that started later than this after its time is shown as late."""
ORDERS_FILE: Final = "dbos-sdk-demo-orders.sqlite"
"""The app's SQLite file, beside the system database (SQLite) or in the current directory."""


@attrs.frozen(kw_only=True)
class DemoDatabase:
    """The system database the demo runs on, as the command line resolved it."""

    url: str
    """Its URL (a SQLite path made absolute, so that the app processes find it)."""
    schema: str
    """The Postgres schema of its tables."""
    shown: str
    """How messages name it (no password)."""
    cli_args: tuple[str, ...]
    """The ``dbos-sdk`` options that select it, for the commands the demo suggests."""


@attrs.frozen
class Narrator:
    """Prints the story for people; silent under --json."""

    enabled: bool

    def say(self, text: str = "") -> None:
        if self.enabled:
            print(text, flush=True)

    def para(self, text: str, indent: str = "      ", first: str | None = None) -> None:
        """A paragraph wrapped to 88 columns."""
        first_indent = indent if first is None else first
        self.say(textwrap.fill(text, 88, initial_indent=first_indent, subsequent_indent=indent))


def run_demo(db: DemoDatabase, *, as_json: bool) -> int:
    """Run the demo (see the module docstring) on ``db``; return the exit code (0, or 1
    with the reason on stderr if a claim did not hold or an app process failed)."""
    out = Narrator(enabled=not as_json)
    run = uuid.uuid4().hex[:8]
    settings = AppSettings(
        system_database_url=db.url,
        schema=db.schema,
        orders_db=str(orders_path(db.url)),
        executor_id=f"demo-app-{run}",
        workflow_id=f"demo-order-{run}",
        order_id=f"order-{run}",
        tick_workflow=f"demo.tick-{run}",
        start=True,
        pause_at_step=PAUSE_AT_STEP,
    )
    try:
        with Observer(db.url, db.schema, run) as observer:
            summary = _Story(out, db, settings, observer).run()
    except DemoError as exc:
        print(f"dbos-sdk: error: the demo failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    return EXIT_OK


def orders_path(system_database_url: str) -> Path:
    """The app's SQLite file: beside a SQLite system database, else in the current
    directory (or a temporary one if that is not writable)."""
    if system_database_url.startswith("sqlite:///"):
        return Path(system_database_url[len("sqlite:///") :]).resolve().parent / ORDERS_FILE
    if os.access(Path.cwd(), os.W_OK):
        return Path.cwd() / ORDERS_FILE
    folder = Path(tempfile.gettempdir()) / "dbos-sdk-demo"
    folder.mkdir(exist_ok=True)
    return folder / ORDERS_FILE


def _hms(t: datetime, *, ms: bool = False) -> str:
    t = t.astimezone(UTC)
    return t.strftime("%H:%M:%S") + (f".{t.microsecond // 1000:03d}" if ms else "")


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class _Story:
    """The demo's phases, narrated and checked."""

    def __init__(
        self, out: Narrator, db: DemoDatabase, settings: AppSettings, observer: Observer
    ) -> None:
        self.out = out
        self.db = db
        self.s = settings
        self.observer = observer
        self.orders = Path(settings.orders_db)

    def run(self) -> dict[str, Any]:
        self._intro()
        first = Child(self.s)
        try:
            tx_step, last_tick, killed_at = self._run_until_killed(first)
        finally:
            first.stop()
        self._outage(first, last_tick)
        second = Child(attrs.evolve(self.s, start=False, pause_at_step=None))
        try:
            self._recover(second, last_tick)
        finally:
            second.stop()
        return self._report(first, second, tx_step, killed_at)

    # --- narration of what the app processes print ---------------------------------------

    def _intro(self) -> None:
        s, say = self.s, self.out.say
        say("dbos-sdk demo: a workflow, a transaction and a schedule survive a SIGKILL")
        say()
        say(f"  System database: {self.db.shown}")
        say(f"  App database:    {self.orders}  (the orders table)")
        say(f"  Workflow ID:     {s.workflow_id}  (process_order: each step is checkpointed)")
        say(f"  Schedule:        {s.tick_workflow}, every {TICK_EVERY_S} s (times in UTC)")
        say(f"  Executor ID:     {s.executor_id}  (at launch, DBOS recovers its PENDING work)")
        say()

    def _follow(self, child: Child, until: Callable[[], bool], what: str) -> None:
        """Narrate what ``child`` prints until ``until()`` holds."""
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while not until():
            try:
                item = child.next(deadline)
            except TimeoutError:
                raise DemoError(
                    f"process {child.pid} did not get to {what} within {CHILD_TIMEOUT_S:.0f} s"
                ) from None
            if item is None:
                raise DemoError(
                    f"process {child.pid} exited (code {child.proc.wait()}) before {what}; "
                    "see its errors above"
                )
            self._show(child, item)

    def _drain(self, child: Child) -> None:
        """Narrate what an exited child printed last."""
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        try:
            while (item := child.next(deadline)) is not None:
                self._show(child, item)
        except TimeoutError:
            raise DemoError(f"process {child.pid} exited, but its output did not end") from None

    def _show(self, child: Child, item: Event | str) -> None:
        say = self.out.say
        if isinstance(item, str):
            say("      | " + item)  # something else the app printed
        elif item.kind == "tick":
            say("      " + _tick_line(item, child))
        elif item.kind == "step" and item.workflow_id != self.s.workflow_id:
            # Launched, the app also runs what it finds enqueued in this database (a
            # workflow forked from an earlier demo, say): not part of the story.
            say(
                f"      (this process also ran step {item.step} of workflow "
                f"{item.workflow_id!r}, found enqueued in this database)"
            )
        elif item.kind == "step" and item.step is not None:
            if child.ran_steps == [item.step] and item.step > 1:
                say(
                    f"      steps {ranges(range(1, item.step))}: replayed from their "
                    "checkpoints (their functions did not run)"
                )
            say(f"      step {item.step}  {item.name:<18} {item.what}")
        elif item.kind == "result":
            say(f"      workflow result: {item.result!r}")

    # --- the phases -------------------------------------------------------------------------

    def _run_until_killed(self, first: Child) -> tuple[int, datetime, float]:
        """Run the app until it is inside PAUSE_AT_STEP and has run a tick; check the
        checkpoints and the order row; kill it. Return the transaction's step, the last
        tick and when the app was killed."""
        wf, out = self.s.workflow_id, self.out
        out.say(
            f"[1/4] Start the app in process {first.pid}: it runs the workflow and the schedule"
        )
        self._follow(
            first, lambda: first.paused and bool(first.ticks), f"step {PAUSE_AT_STEP} and a tick"
        )
        last_tick = self._settle(first)
        steps = self._steps_before_pause(wf)
        done = [st.function_id for st in steps]
        tx_step = next((st.function_id for st in steps if st.function_name == RECORD_ORDER), 0)
        if done != list(range(1, PAUSE_AT_STEP)) or not tx_step:
            raise DemoError(
                f"inside step {PAUSE_AT_STEP} the system database should hold steps "
                f"{ranges(range(1, PAUSE_AT_STEP))} of {wf}, one of them {RECORD_ORDER}; "
                f"it holds {[(st.function_id, st.function_name) for st in steps]}"
            )
        order = read_order(self.orders, self.s.order_id, wf, tx_step)
        check_order(order, self.s.order_id, tx_step, first.pid)
        kill_name = "SIGKILL" if os.name == "posix" else "TerminateProcess"
        out.say(f"[2/4] Crash it in the middle of step {PAUSE_AT_STEP}")
        out.para(
            f"Steps {ranges(done)} are checkpointed in the system database, and the order row "
            f"is in the app database, committed with step {tx_step}'s completion checkpoint. "
            f"Killing process {first.pid} with {kill_name}: no shutdown, no clean-up."
        )
        first.kill()
        killed_at = time.time()
        self._drain(first)  # what it printed just before: its checks count every tick
        return tx_step, last_tick, killed_at

    def _steps_before_pause(self, wf: str) -> list[StepInfo]:
        """The workflow's recorded steps once steps 1 .. PAUSE_AT_STEP-1 are all there (a
        Postgres system database may write a transaction's record a few ms after its
        commit: its outcome is durable in the datasource from the commit on), or as they
        are after STEPS_WAIT_S."""
        deadline = time.monotonic() + STEPS_WAIT_S
        while True:
            steps = self.observer.steps(wf)
            if len(steps) >= PAUSE_AT_STEP - 1 or time.monotonic() > deadline:
                return steps
            time.sleep(0.02)

    def _settle(self, child: Child) -> datetime:
        """Wait until no tick is in flight: the ticks ``child`` ran are recorded SUCCESS,
        the scheduler recorded the latest as its last tick, and the next is not due within
        SETTLE_S. Return that last tick."""
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while True:
            latest = max(datetime.fromisoformat(e.scheduled) for e in child.ticks)
            coming = latest + timedelta(seconds=TICK_EVERY_S)
            if coming.timestamp() - time.time() < SETTLE_S:
                self._follow(child, _has_tick(child, coming), f"its tick due at {_hms(coming)}")
                continue
            ids = {e.workflow_id for e in child.ticks}
            recorded = self.observer.workflows(self.s.tick_workflow)
            done = {w.workflow_id for w in recorded if w.status == "SUCCESS"}
            if ids <= done and self.observer.last_tick(self.s.tick_workflow) == latest:
                return latest
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the ticks {sorted(ids - done)} did not finish in {CHILD_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.02)

    def _outage(self, first: Child, last_tick: datetime) -> None:
        """Check the workflow is PENDING; let MISSED_TICKS ticks fall due with no app."""
        wf = self.s.workflow_id
        status = self.observer.status(wf)
        if status is None or status.status != "PENDING":
            raise DemoError(
                f"after the kill {wf} should be PENDING, not {status and status.status}"
            )
        missed = [
            last_tick + timedelta(seconds=TICK_EVERY_S * k) for k in range(1, 1 + MISSED_TICKS)
        ]
        wait_s = max(0.0, missed[-1].timestamp() + RESTART_MARGIN_S - time.time())
        self.out.para(
            f"Process {first.pid} is gone; the workflow is still PENDING, and the schedule's "
            f"last tick was {_hms(last_tick)}. For {wait_s:.1f} s no app runs: the ticks due at "
            f"{_and([_hms(t) for t in missed])} are missed."
        )
        time.sleep(wait_s)

    def _recover(self, second: Child, last_tick: datetime) -> None:
        """Follow the fresh process until the workflow finished and every tick due by its
        launch ran; then stop it (it shuts down cleanly)."""

        def caught_up() -> bool:
            if second.result is None or second.launched_at is None:
                return False
            ran = {datetime.fromisoformat(e.scheduled) for e in second.ticks}
            due = last_tick + timedelta(seconds=TICK_EVERY_S)
            while due.timestamp() <= second.launched_at:
                if due not in ran:
                    return False
                due += timedelta(seconds=TICK_EVERY_S)
            return True

        self.out.say(f"[3/4] Restart the app in a fresh process {second.pid}")
        self.out.para(
            "Its DBOS.launch() recovers the PENDING workflow, and the scheduler runs the "
            "missed ticks:"
        )
        self._follow(second, caught_up, "finishing the workflow and running the missed ticks")
        code = second.finish()
        self._drain(second)
        if code != 0:
            raise DemoError(f"the restarted process exited with code {code}; see its errors above")

    def _report(
        self, first: Child, second: Child, tx_step: int, killed_at: float
    ) -> dict[str, Any]:
        s, out, observer = self.s, self.out, self.observer
        wf = s.workflow_id
        status = observer.status(wf)
        if status is None or status.status != "SUCCESS":
            raise DemoError(
                f"{wf} should be SUCCESS after recovery, not {status and status.status}"
            )
        steps = check_steps(observer.steps(wf), first, second, PAUSE_AT_STEP)
        order = read_order(self.orders, s.order_id, wf, tx_step)
        check_order(order, s.order_id, tx_step, first.pid)
        if tx_step in second.ran_steps:
            raise DemoError(f"the transaction (step {tx_step}) ran again after the restart")
        ticks = check_ticks(
            observer.workflows(s.tick_workflow),
            (first, second),
            workflow_name=s.tick_workflow,
            every_s=TICK_EVERY_S,
            killed_at=killed_at,
            missed_at_least=MISSED_TICKS,
        )
        missed = [t for t in ticks if t.missed]

        out.say("[4/4] What the databases recorded")
        for line in _steps_table(steps):
            out.say("      " + line)
        out.say()
        out.say(f"      orders: {order.rows} row for {s.order_id}, inserted by process {first.pid}")
        out.say(
            f"      dbos_transaction_completion: {order.checkpoints} checkpoint, "
            f"for step {tx_step} of {wf}"
        )
        out.say()
        for line in _ticks_table(ticks):
            out.say("      " + line)
        out.say()
        before = [r.step for r in steps if r.ran_in == "first"]

        def bullet(text: str) -> None:
            out.para(text, indent="  ", first="* ")

        bullet(
            f"Steps {ranges(before)} ran once, in process {first.pid}, before the kill; process "
            f"{second.pid} replayed their checkpointed outputs. Step {PAUSE_AT_STEP} was killed "
            "before its checkpoint, so it ran again: a step runs at least once, and never "
            "again once checkpointed.",
        )
        bullet(
            f"The order was recorded exactly once: one row, inserted by process {first.pid} "
            f"in the transaction that also committed step {tx_step}'s completion checkpoint. "
            f"Recovery found step {tx_step} checkpointed and did not run the transaction again.",
        )
        bullet(
            f"The schedule ran {len(ticks)} ticks, one workflow each, {TICK_EVERY_S} s apart "
            f"with no gap and no duplicate; the {len(missed)} that fell due while no app ran "
            f"were run once, late, by process {second.pid}.",
        )
        bullet(f"Workflow {wf} is {status.status}: {second.result!r}")
        commands = [
            *(
                shlex.join(["dbos-sdk", "workflow", a, wf, *self.db.cli_args])
                for a in ("get", "steps")
            ),
            shlex.join(
                ["dbos-sdk", "workflow", "list", "--name", s.tick_workflow, *self.db.cli_args]
            ),
            # The order ID is hex and a dash: safe inside double quotes.
            f"sqlite3 {shlex.quote(str(self.orders))} "
            f"\"SELECT * FROM orders WHERE order_id = '{s.order_id}'\"",
        ]
        out.say()
        out.say("Inspect it yourself:")
        for c in commands:
            out.say(f"  {c}")
        return {
            "workflow_id": wf,
            "executor_id": s.executor_id,
            "database": self.db.shown,
            "schema": self.db.schema,
            "app_database": str(self.orders),
            "status": status.status,
            "result": second.result,
            "killed_pid": first.pid,
            "killed_in_step": PAUSE_AT_STEP,
            "recovered_pid": second.pid,
            "steps": [attrs.asdict(r, filter=lambda a, _: a.name != "output") for r in steps],
            "order": {
                "order_id": s.order_id,
                "rows": order.rows,
                "inserted_by": list(order.written_by),
                "transaction_step": tx_step,
                "checkpoints": order.checkpoints,
            },
            "tick_workflow": s.tick_workflow,
            "ticks": [
                {
                    "workflow_id": t.workflow_id,
                    "scheduled": t.scheduled.isoformat(),
                    "actual": t.actual.isoformat(),
                    "late_s": round(t.late_s, 3),
                    "ran_in": t.ran_in,
                    "ran_in_pid": t.ran_in_pid,
                    "missed": t.missed,
                }
                for t in ticks
            ],
            "inspect": commands,
        }


def _has_tick(child: Child, due: datetime) -> Callable[[], bool]:
    """Whether ``child`` ran the tick due at ``due`` yet."""
    return lambda: any(datetime.fromisoformat(e.scheduled) >= due for e in child.ticks)


def _tick_line(e: Event, child: Child) -> str:
    scheduled = datetime.fromisoformat(e.scheduled)
    actual = datetime.fromisoformat(e.actual)
    late = (actual - scheduled).total_seconds()
    if scheduled.timestamp() < child.started_at:
        note = f"{late:.1f} s late: missed while no app ran"
    elif late < LATE_S:
        note = "on time"
    else:
        note = f"{late:.1f} s late"
    return f"tick    {'due ' + _hms(scheduled):<18} ran at {_hms(actual, ms=True)}, {note}"


def _steps_table(rows: Sequence[StepRow]) -> list[str]:
    def where(r: StepRow) -> str:
        if r.ran_in == "first":
            return f"{r.ran_in_pid} (before the kill)"
        return f"{r.ran_in_pid} (restart{', re-run' if r.runs > 1 else ''})"

    return table(
        ["STEP", "NAME", "RAN IN PROCESS", "OUTPUT"],
        [[str(r.step), r.name, where(r), clip(r.output, 40)] for r in rows],
    )


def _ticks_table(rows: Sequence[TickRow]) -> list[str]:
    def where(r: TickRow) -> str:
        if r.missed:
            return f"{r.ran_in_pid} (missed, {r.late_s:.1f} s late)"
        return f"{r.ran_in_pid} ({'on time' if r.late_s < LATE_S else f'{r.late_s:.1f} s late'})"

    return table(
        ["TICK WORKFLOW ID", "STARTED", "RAN IN PROCESS"],
        [[r.workflow_id, _hms(r.actual, ms=True), where(r)] for r in rows],
    )
