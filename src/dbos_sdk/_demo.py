"""``dbos-sdk demo``: watch a workflow survive being killed, for real.

What happens (the *parent* is the process running ``dbos-sdk demo``):

1. The parent starts the demo app in a child process (``python -m dbos_sdk demo --child``).
   The app launches DBOS and starts ``process_order``, a workflow of checkpointed steps.
2. Every step tells the parent, on stdout, when it starts. A step's checkpoint is written
   before the next step starts, so when the child says it is inside step 3, steps 1 and 2
   are checkpointed: the parent checks that in the system database and SIGKILLs the
   child (no shutdown, no clean-up).
3. The parent starts the app again in a fresh child with the same executor ID. Its
   ``DBOS.launch()`` finds the workflow PENDING and recovers it: steps 1-2 return their
   recorded outputs without running; step 3 (killed before its checkpoint) and the rest run.
4. The parent reads the system database and tells what ran where, and checks it: the demo
   exits 1 if durability did not hold.

To extend the demo, add a step (or a transaction) to section 1, call ``step_begins`` first
thing in it and call it from ``process_order``: the narration and the checks follow.
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

import attrs

from dbos_sdk._cli import (
    DEFAULT_DB_URL,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    DatabaseTarget,
    Decoder,
    absolute_sqlite_url,
    clip,
    open_database,
    render_table,
)
from dbos_sdk._config import DBOSConfig, redact_url
from dbos_sdk._context import SetWorkflowID
from dbos_sdk._dbos import DBOS
from dbos_sdk._handles import WorkflowHandle
from dbos_sdk._sysdb import StepRow, WorkflowRow

STEP_SECONDS = 0.25
"""How long each step pretends to work, so that the narration can be followed."""
PAUSE_AT_STEP = 3
"""The step inside which the first process is killed."""
PAUSE_SECONDS = 60.0
"""How long the first process waits inside that step for the parent to kill it."""
CHILD_TIMEOUT_S = 60.0

# --- 1. the app: steps and the workflow ----------------------------------------------


class Receipt(TypedDict):
    """What a step returns, and the system database records. ``pid`` is the process that
    ran the step: it tells a replayed step (old pid) from one that ran again (new pid)."""

    what: str
    ref: str
    pid: int


def _receipt(what: str, prefix: str) -> Receipt:
    return {"what": what, "ref": f"{prefix}-{uuid.uuid4().hex[:6].upper()}", "pid": os.getpid()}


@DBOS.step(name="demo.reserve_inventory")
def reserve_inventory(order_id: str) -> Receipt:
    step_begins("reserve_inventory", f"reserve 2 widgets for {order_id}")
    return _receipt("reserved 2 widgets", "RES")


@DBOS.step(name="demo.charge_payment")
def charge_payment(order_id: str, amount_cents: int) -> Receipt:
    step_begins("charge_payment", f"charge ${amount_cents / 100:.2f} to the customer's card")
    return _receipt(f"charged {amount_cents} cents", "PAY")


@DBOS.step(name="demo.ship_order")
def ship_order(order_id: str, reservation: str) -> Receipt:
    step_begins("ship_order", f"hand the parcel for {reservation} to the carrier")
    return _receipt("parcel handed to the carrier", "TRK")


@DBOS.step(name="demo.notify_customer")
def notify_customer(order_id: str, tracking: str) -> Receipt:
    step_begins("notify_customer", f"email tracking number {tracking} to the customer")
    return _receipt("customer emailed", "MAIL")


@DBOS.workflow(name="demo.process_order")
def process_order(order_id: str) -> str:
    """The demo workflow. Its body runs again on recovery; its steps do not."""
    reservation = reserve_inventory(order_id)
    payment = charge_payment(order_id, 4200)
    shipment = ship_order(order_id, reservation["ref"])
    notify_customer(order_id, shipment["ref"])
    return (
        f"{order_id} fulfilled: {reservation['ref']}, {payment['ref']}, {shipment['ref']}, "
        "customer notified"
    )


# --- 2. how the child tells the parent what it does ----------------------------------

CHILD_ENV = "DBOS_SDK_DEMO_CHILD"
"""The child's settings, as JSON: in the environment, so that a password in the database
URL does not show in the process list."""
_EVENT = "@@dbos-demo "


@attrs.frozen(kw_only=True)
class ChildSettings:
    url: str
    schema: str
    executor_id: str
    workflow_id: str
    order_id: str
    start: bool
    """Start the workflow (first process), or only launch and let recovery run it."""
    pause_at_step: int | None

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self))

    @staticmethod
    def from_env() -> "ChildSettings | None":
        text = os.environ.get(CHILD_ENV)
        if not text:
            return None
        data: dict[str, Any] = json.loads(text)
        pause = data["pause_at_step"]
        return ChildSettings(
            url=str(data["url"]),
            schema=str(data["schema"]),
            executor_id=str(data["executor_id"]),
            workflow_id=str(data["workflow_id"]),
            order_id=str(data["order_id"]),
            start=bool(data["start"]),
            pause_at_step=int(pause) if pause is not None else None,
        )


@attrs.frozen(kw_only=True)
class Event:
    """One line the child prints for the parent."""

    kind: str
    pid: int
    workflow_id: str = ""
    step: int | None = None
    name: str = ""
    what: str = ""
    result: str = ""

    def line(self) -> str:
        return _EVENT + json.dumps(attrs.asdict(self))

    @staticmethod
    def parse(line: str) -> "Event | None":
        if not line.startswith(_EVENT):
            return None
        try:
            data: dict[str, Any] = json.loads(line[len(_EVENT) :])
            step = data.get("step")
            return Event(
                kind=str(data["kind"]),
                pid=int(data["pid"]),
                workflow_id=str(data.get("workflow_id", "")),
                step=int(step) if step is not None else None,
                name=str(data.get("name", "")),
                what=str(data.get("what", "")),
                result=str(data.get("result", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # not an event after all: shown as printed


def emit(kind: str, **fields: Any) -> None:
    print(Event(kind=kind, pid=os.getpid(), **fields).line(), flush=True)


def step_begins(name: str, what: str) -> None:
    """Tell the parent this step runs (in this process); pause here if told to; then
    pretend to work for a moment. Call it first thing in every demo step."""
    step = DBOS.step_id
    workflow_id = DBOS.workflow_id or ""
    emit("step", workflow_id=workflow_id, step=step, name=name, what=what)
    settings = ChildSettings.from_env()
    if (
        settings is not None
        and workflow_id == settings.workflow_id
        and step == settings.pause_at_step
    ):
        emit("paused", workflow_id=workflow_id, step=step)
        time.sleep(PAUSE_SECONDS)  # the parent kills this process during this sleep
    time.sleep(STEP_SECONDS)


# --- 3. the child: the demo app ------------------------------------------------------


def run_child() -> int:
    """The demo app: launch DBOS (which recovers this executor's pending workflows), start
    the workflow if told to, wait for its result and print it."""
    settings = ChildSettings.from_env()
    if settings is None:
        print(f"dbos-sdk demo --child is run by `dbos-sdk demo` (it sets ${CHILD_ENV}).")
        return EXIT_USAGE
    DBOS(
        DBOSConfig(
            "dbos-sdk-demo",
            system_database_url=settings.url,
            postgres_schema=settings.schema,
            executor_id=settings.executor_id,
        )
    )
    DBOS.launch()
    try:
        handle: WorkflowHandle[Any]
        if settings.start:
            with SetWorkflowID(settings.workflow_id):
                handle = DBOS.start_workflow(process_order, settings.order_id)
        else:  # DBOS.launch() has already started recovering it
            handle = DBOS.retrieve_workflow(settings.workflow_id)
        result = handle.get_result(timeout=CHILD_TIMEOUT_S)
        emit("result", workflow_id=settings.workflow_id, result=str(result))
    finally:
        DBOS.shutdown()
    return EXIT_OK


# --- 4. the parent: run, kill, recover, report -----------------------------------------


class DemoFailed(Exception):
    """Durability did not hold, or a child misbehaved; the message says how."""


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


class Child:
    """One run of the demo app in a child process, whose events the parent follows."""

    def __init__(self, settings: ChildSettings) -> None:
        env = {**os.environ, CHILD_ENV: settings.to_json(), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dbos_sdk", "demo", "--child"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.workflow_id = settings.workflow_id
        self.ran_steps: list[int] = []
        self.result: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def follow(self, out: Narrator, *, until: str | None) -> Event | None:
        """Narrate the child's events until one of kind ``until`` (returned) or its end."""
        timer = threading.Timer(CHILD_TIMEOUT_S, self.proc.kill)
        timer.start()
        try:
            stream = self.proc.stdout
            assert stream is not None
            while line := stream.readline():
                event = Event.parse(line)
                if event is None:
                    out.say("      | " + line.rstrip())  # something else the app printed
                    continue
                if event.workflow_id != self.workflow_id:
                    # Launched, the app also runs what it finds enqueued in this database
                    # (a workflow forked from an earlier demo, say): not part of the story.
                    out.say(
                        f"      (this process also ran step {event.step} of workflow "
                        f"{event.workflow_id!r}, found enqueued in this database)"
                    )
                    continue
                if event.kind == "step" and event.step is not None:
                    if not self.ran_steps and event.step > 1 and out.enabled:
                        out.say(
                            f"      steps {_ranges(range(1, event.step))}: replayed from their "
                            "checkpoints (their functions did not run)"
                        )
                    self.ran_steps.append(event.step)
                    out.say(f"      step {event.step}  {event.name:<18} {event.what}")
                elif event.kind == "result":
                    self.result = event.result
                    out.say(f"      workflow result: {event.result!r}")
                if event.kind == until:
                    return event
        finally:
            timer.cancel()
        return None

    def wait(self) -> int:
        return self.proc.wait(timeout=CHILD_TIMEOUT_S)

    def stop(self) -> None:
        """Kill the child if it still runs (the parent was interrupted or failed)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _default_target(out: Narrator) -> DatabaseTarget:
    url = DEFAULT_DB_URL
    if not os.access(Path.cwd(), os.W_OK):
        path = Path(tempfile.gettempdir()) / "dbos-sdk-demo" / "dbos-sdk.sqlite"
        out.say(f"(The current directory is not writable: the demo uses {path}.)")
        url = f"sqlite:///{path}"
    return DatabaseTarget(absolute_sqlite_url(url))


def _read(target: DatabaseTarget, workflow_id: str) -> tuple[WorkflowRow | None, list[StepRow]]:
    with open_database(target) as sysdb:
        return sysdb.get_workflow(workflow_id), sysdb.get_steps(workflow_id)


def _ranges(steps: Sequence[int]) -> str:
    if not steps:
        return "none"
    if list(steps) == list(range(steps[0], steps[-1] + 1)) and len(steps) > 1:
        return f"{steps[0]}-{steps[-1]}"
    return ", ".join(str(s) for s in steps)


def run_demo(explicit: DatabaseTarget | None, *, as_json: bool) -> int:
    """Run the demo (see the module docstring); return the exit code."""
    out = Narrator(enabled=not as_json)
    target = explicit or _default_target(out)
    target = DatabaseTarget(absolute_sqlite_url(target.url), target.schema)
    run = uuid.uuid4().hex[:8]
    settings = ChildSettings(
        url=target.url,
        schema=target.schema,
        executor_id=f"demo-app-{run}",
        workflow_id=f"demo-order-{run}",
        order_id=f"order-{run}",
        start=True,
        pause_at_step=PAUSE_AT_STEP,
    )
    try:
        summary = _run_phases(out, target, settings)
    except DemoFailed as exc:
        print(f"dbos-sdk: error: the demo failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    return EXIT_OK


def _run_phases(out: Narrator, target: DatabaseTarget, s: ChildSettings) -> dict[str, Any]:
    wf = s.workflow_id
    kill_name = "SIGKILL" if os.name == "posix" else "TerminateProcess"
    out.say("dbos-sdk demo: a durable workflow survives being killed")
    out.say()
    out.say(f"  System database: {target.shown}")
    out.say(f"  Workflow ID:     {wf}  (process_order: each step is checkpointed)")
    out.say(f"  Executor ID:     {s.executor_id}  (at launch, DBOS recovers its PENDING work)")
    out.say()

    # Phase 1: run until inside step PAUSE_AT_STEP, check the checkpoints, kill.
    first = Child(s)
    try:
        out.say(f"[1/4] Start the app in process {first.pid} and run the workflow")
        if first.follow(out, until="paused") is None:
            raise DemoFailed(
                f"the first process ended (exit code {first.proc.poll()}) before reaching "
                f"step {PAUSE_AT_STEP}; see its errors above"
            )
        row, steps = _read(target, wf)
        done = [st.function_id for st in steps]
        if row is None or done != list(range(1, PAUSE_AT_STEP)):
            raise DemoFailed(
                f"inside step {PAUSE_AT_STEP} the database should hold steps "
                f"{_ranges(range(1, PAUSE_AT_STEP))} of {wf}, but holds {done}"
            )
        out.say(f"[2/4] Crash it in the middle of step {PAUSE_AT_STEP}")
        out.para(
            f"The database has steps {_ranges(done)} checkpointed. Killing process "
            f"{first.pid} with {kill_name}: no shutdown, no clean-up."
        )
        first.proc.kill()
        first.proc.wait()
    finally:
        first.stop()
    row, steps = _read(target, wf)
    if row is None or row.status != "PENDING":
        raise DemoFailed(f"after the kill {wf} should be PENDING, not {row and row.status}")
    out.para(
        f"Process {first.pid} is gone. The workflow is still PENDING in the database, "
        f"with steps {_ranges([st.function_id for st in steps])} checkpointed."
    )

    # Phase 2: a fresh process with the same executor ID recovers the workflow.
    second = Child(attrs.evolve(s, start=False, pause_at_step=None))
    try:
        out.say(f"[3/4] Restart the app in a fresh process {second.pid}")
        out.para("Its DBOS.launch() finds the PENDING workflow and recovers it:")
        second.follow(out, until=None)
        code = second.wait()
    finally:
        second.stop()
    if code != 0 or second.result is None:
        raise DemoFailed(f"the recovering process exited with code {code}; see its errors above")

    # Report, from the system database, and check that durability held.
    row, steps = _read(target, wf)
    if row is None or row.status != "SUCCESS":
        raise DemoFailed(f"{wf} should be SUCCESS after recovery, not {row and row.status}")
    report = _step_report(steps, first, second)
    out.say("[4/4] What the system database recorded")
    table = render_table(
        ["STEP", "NAME", "RAN IN PROCESS", "OUTPUT"],
        [[str(r["step"]), r["name"], r["ran_in_text"], r["output_text"]] for r in report],
    )
    for line in table.splitlines():
        out.say("      " + line)
    before = [r["step"] for r in report if r["ran_in"] == "first"]
    out.say()
    out.para(
        f"Steps {_ranges(before)} ran once, in process {first.pid}, before the kill. "
        f"Process {second.pid} did not run them again: it replayed their checkpointed "
        "outputs and went on from there.",
        indent="  ",
        first="* ",
    )
    out.para(
        f"Step {PAUSE_AT_STEP} was killed before its checkpoint was written, so it ran again "
        "after the restart: a step runs at least once, and never again once checkpointed.",
        indent="  ",
        first="* ",
    )
    out.para(f"Workflow {wf} is {row.status}: {second.result!r}", indent="  ", first="* ")
    commands = [
        shlex.join(["dbos-sdk", "workflow", action, wf, *target.cli_args()])
        for action in ("get", "steps")
    ]
    commands.append(shlex.join(["dbos-sdk", "workflow", "list", *target.cli_args()]))
    out.say()
    out.say("Inspect it yourself:")
    for c in commands:
        out.say(f"  {c}")
    return {
        "workflow_id": wf,
        "executor_id": s.executor_id,
        "database": redact_url(target.url),
        "schema": target.schema,
        "status": row.status,
        "result": second.result,
        "killed_pid": first.pid,
        "killed_in_step": PAUSE_AT_STEP,
        "recovered_pid": second.pid,
        "steps": [{k: v for k, v in r.items() if not k.endswith("_text")} for r in report],
        "inspect": commands,
    }


def _recorded_pid(output: object) -> int | None:
    """The ``pid`` of a step output that is a Receipt (other outputs have none)."""
    if isinstance(output, dict):
        pid = cast("dict[str, object]", output).get("pid")
        return pid if isinstance(pid, int) else None
    return None


def _step_report(steps: Sequence[StepRow], first: Child, second: Child) -> list[dict[str, Any]]:
    """Per recorded step: which process ran it, checked against what the children said."""
    ids = [st.function_id for st in steps]
    if ids != list(range(1, len(ids) + 1)) or len(ids) < PAUSE_AT_STEP:
        raise DemoFailed(f"the recorded steps should be 1..n with n >= {PAUSE_AT_STEP}: {ids}")
    expect_first = list(range(1, PAUSE_AT_STEP + 1))
    expect_second = list(range(PAUSE_AT_STEP, len(ids) + 1))
    if first.ran_steps != expect_first or second.ran_steps != expect_second:
        raise DemoFailed(
            f"the first process should have run steps {expect_first} and the second "
            f"{expect_second}, but they ran {first.ran_steps} and {second.ran_steps}"
        )
    dec = Decoder()
    report: list[dict[str, Any]] = []
    for st in steps:
        in_first = st.function_id < PAUSE_AT_STEP
        pid = first.pid if in_first else second.pid
        shown = dec.decode(st.output, st.serialization)
        recorded_pid = _recorded_pid(shown.data if shown is not None else None)
        if recorded_pid is not None and recorded_pid != pid:
            raise DemoFailed(
                f"step {st.function_id} should have been recorded by process {pid}, "
                f"but its output says {recorded_pid}"
            )
        killed = st.function_id == PAUSE_AT_STEP
        note = "before the kill" if in_first else "restart, re-run" if killed else "restart"
        report.append(
            {
                "step": st.function_id,
                "name": st.function_name,
                "ran_in": "first" if in_first else "recovery",
                "ran_in_pid": pid,
                "runs": (first.ran_steps + second.ran_steps).count(st.function_id),
                "ran_in_text": f"{pid} ({note})",
                "output_text": clip(shown.text, 45) if shown is not None else "",
            }
        )
    return report
