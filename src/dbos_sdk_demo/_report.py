"""What the demo's parent concludes from the databases, checked against what the app
processes said they ran: each function raises DemoError when a claim does not hold."""

import itertools
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, cast, runtime_checkable

import attrs

from dbos_sdk import StepInfo, WorkflowStatus

from ._instruments import OrderRows
from ._protocol import DemoError, Event


@runtime_checkable
class AppRun(Protocol):
    """What one app process did, as it told the parent (an ``_instruments.Child``)."""

    @property
    def pid(self) -> int: ...
    @property
    def started_at(self) -> float: ...
    @property
    def ran_steps(self) -> list[int]: ...
    @property
    def ticks(self) -> list[Event]: ...


@attrs.frozen(kw_only=True)
class StepRow:
    """One recorded step of the order workflow, and where its function ran."""

    step: int
    name: str
    ran_in: str
    """``first`` (before the kill) or ``recovery``."""
    ran_in_pid: int
    runs: int
    """How many times its function ran, in both processes."""
    output: str


@attrs.frozen(kw_only=True)
class TickRow:
    """One tick of the schedule: its workflow, when it was due and started, and where."""

    workflow_id: str
    scheduled: datetime
    actual: datetime
    ran_in: str
    ran_in_pid: int
    missed: bool
    """Due while no app process ran (between the kill and the restart)."""

    @property
    def late_s(self) -> float:
        return (self.actual - self.scheduled).total_seconds()


def ranges(ids: Sequence[int]) -> str:
    """``1-3`` for [1, 2, 3], ``1, 3`` otherwise."""
    if not ids:
        return "none"
    if len(ids) > 1 and list(ids) == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}-{ids[-1]}"
    return ", ".join(str(i) for i in ids)


def _recorded_pid(output: object) -> int | None:
    """The ``pid`` of a step or tick output (a dict with one); None for anything else."""
    if isinstance(output, dict):
        pid = cast("dict[str, object]", output).get("pid")
        return pid if isinstance(pid, int) else None
    return None


def check_steps(
    steps: Sequence[StepInfo], first: AppRun, second: AppRun, killed_in: int
) -> list[StepRow]:
    """Per recorded step, which process ran it; checked against what the processes said:
    the steps before ``killed_in`` ran in the first only, the rest in the second."""
    ids = [s.function_id for s in steps]
    if ids != list(range(1, len(ids) + 1)) or len(ids) <= killed_in:
        raise DemoError(f"the recorded steps should be 1..n with n > {killed_in}, not {ids}")
    expect_first = list(range(1, killed_in + 1))
    expect_second = list(range(killed_in, len(ids) + 1))
    if first.ran_steps != expect_first or second.ran_steps != expect_second:
        raise DemoError(
            f"the first process should have run steps {expect_first} and the second "
            f"{expect_second}, but they ran {first.ran_steps} and {second.ran_steps}"
        )
    rows: list[StepRow] = []
    for s in steps:
        in_first = s.function_id < killed_in
        pid = first.pid if in_first else second.pid
        recorded = _recorded_pid(s.output)
        if s.error is not None or recorded != pid:
            raise DemoError(
                f"step {s.function_id} should have been recorded by process {pid}, but its "
                f"outcome is {s.error or s.output!r}"
            )
        rows.append(
            StepRow(
                step=s.function_id,
                name=s.function_name,
                ran_in="first" if in_first else "recovery",
                ran_in_pid=pid,
                runs=(first.ran_steps + second.ran_steps).count(s.function_id),
                output=repr(s.output),
            )
        )
    return rows


def check_order(order: OrderRows, order_id: str, step: int, pid: int) -> None:
    """The order has one row, inserted by process ``pid``, and its transaction one
    completion checkpoint."""
    if order.rows != 1 or order.written_by != (pid,) or order.checkpoints != 1:
        raise DemoError(
            f"the app database should hold 1 row for {order_id}, inserted by process {pid}, "
            f"and 1 completion checkpoint for step {step}; it holds {order.rows} row(s) "
            f"inserted by {list(order.written_by)} and {order.checkpoints} checkpoint(s)"
        )


def check_ticks(
    statuses: Sequence[WorkflowStatus],
    children: tuple[AppRun, AppRun],
    *,
    workflow_name: str,
    every_s: int,
    killed_at: float,
    missed_at_least: int,
) -> list[TickRow]:
    """The schedule's workflows, oldest first, checked: all SUCCESS, IDs unique and as
    documented, ticks consecutive (no gap), each run once (one event in all), by the process
    that recorded it; at least ``missed_at_least`` due while no app ran, run by the second."""
    first, second = children
    ids = [s.workflow_id for s in statuses]
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    if not statuses or duplicates:
        raise DemoError(f"the schedule's workflows should be unique and some: {ids}")
    runs = Counter(e.workflow_id for c in children for e in c.ticks)
    ran_in = {e.workflow_id: c for c in children for e in c.ticks}
    rows: list[TickRow] = []
    for s in statuses:
        output: Any = s.output
        if s.status != "SUCCESS" or not isinstance(output, dict):
            raise DemoError(f"tick {s.workflow_id} should be SUCCESS, not {s.status}")
        record = cast("dict[str, Any]", output)
        scheduled = datetime.fromisoformat(str(record["scheduled"]))
        child = ran_in.get(s.workflow_id)
        if s.workflow_id != f"sched-{workflow_name}-{scheduled.isoformat()}":
            raise DemoError(f"tick {s.workflow_id} should be named after its time {scheduled}")
        if runs[s.workflow_id] != 1 or child is None or _recorded_pid(record) != child.pid:
            raise DemoError(
                f"tick {s.workflow_id} should have run once, in the process that recorded "
                f"it (it ran {runs[s.workflow_id]} time(s); recorded by {record.get('pid')})"
            )
        rows.append(
            TickRow(
                workflow_id=s.workflow_id,
                scheduled=scheduled,
                actual=datetime.fromisoformat(str(record["actual"])),
                ran_in="first" if child is first else "recovery",
                ran_in_pid=child.pid,
                missed=killed_at < scheduled.timestamp() < second.started_at,
            )
        )
    rows.sort(key=lambda r: r.scheduled)
    for a, b in itertools.pairwise(rows):
        if (b.scheduled - a.scheduled).total_seconds() != every_s:
            raise DemoError(
                f"ticks should be {every_s} s apart, but {a.workflow_id} is followed by "
                f"{b.workflow_id}"
            )
    unrecorded = set(runs) - set(ids)
    missed = [r for r in rows if r.missed]
    if unrecorded:
        raise DemoError(f"ticks ran but were not recorded: {sorted(unrecorded)}")
    if not any(r.ran_in == "first" for r in rows):
        raise DemoError("the first process should have run a tick before it was killed")
    if len(missed) < missed_at_least or any(r.ran_in != "recovery" for r in missed):
        raise DemoError(
            f"at least {missed_at_least} ticks fell due while no app ran, and the restarted "
            f"process should have run them: {[(r.workflow_id, r.ran_in) for r in missed]}"
        )
    return rows


def clip(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart (the last one not padded)."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [headers, *rows]
    ]
