"""``dbos-sdk demo``, run for real: a workflow, a SQLite transaction and a schedule survive a
SIGKILL, and the narration, the system database and the app's SQLite file all say so.

The demo's parent runs in this process through ``main(argv)`` (beartype checks it); its
app processes run with beartype too, turned on by a ``sitecustomize`` on their PYTHONPATH.
The entry points run as real processes.
"""

from beartype import BeartypeConf
from beartype.claw import beartype_package

# As conftest.py does for the other packages: before anything imports the demo package.
beartype_package("dbos_sdk_demo", conf=BeartypeConf(claw_is_pep526=False, is_pep484_tower=True))

import io  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import sqlite3  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from contextlib import redirect_stderr, redirect_stdout  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import attrs  # noqa: E402
import pytest  # noqa: E402

from dbos_sdk import WorkflowStatus  # noqa: E402
from dbos_sdk._cli import DB_URL_ENV, EXIT_DATABASE, EXIT_OK, main  # noqa: E402
from dbos_sdk_demo._instruments import OrderRows  # noqa: E402
from dbos_sdk_demo._protocol import SETTINGS_ENV, DemoError, Event  # noqa: E402
from dbos_sdk_demo._report import check_order, check_ticks  # noqa: E402

SITECUSTOMIZE = """\
import warnings

from beartype import BeartypeConf
from beartype.claw import beartype_package
from beartype.roar import BeartypeClawDecorWarning

warnings.simplefilter("error", BeartypeClawDecorWarning)
for _package in ("dbos_sdk", "dbos_sqlite_datasource", "dbos_sdk_demo"):
    beartype_package(_package, conf=BeartypeConf(claw_is_pep526=False, is_pep484_tower=True))
"""


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def cli_json(*args: str) -> Any:
    code, out, err = cli(*args, "--json")
    assert code == EXIT_OK, err
    return json.loads(out)


@pytest.fixture
def beartyped_children(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's app processes (children of this one) run with beartype on."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(autouse=True)
def _no_database_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DB_URL_ENV, raising=False)


def _in_order(text: str, parts: list[str]) -> None:
    pos = 0
    for part in parts:
        found = text.find(part, pos)
        assert found >= 0, f"{part!r} is missing after position {pos} of: {text}"
        pos = found + len(part)


def _tick_time(workflow_id: str, name: str) -> datetime:
    assert workflow_id.startswith(f"sched-{name}-"), workflow_id
    return datetime.fromisoformat(workflow_id.removeprefix(f"sched-{name}-"))


# --- the demo, end to end ---------------------------------------------------------------


@pytest.mark.usefixtures("beartyped_children")
def test_demo_recovers_steps_the_transaction_and_missed_ticks_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default databases, as in the README: the current dir
    start = time.monotonic()
    code, raw, err = cli("demo")
    elapsed = time.monotonic() - start
    assert code == EXIT_OK, raw + err
    assert elapsed < 20  # about 6-9 s unchecked; beartype slows the processes' imports
    out = " ".join(raw.split())  # the narration wraps its paragraphs
    killed_m = re.search(r"Killing process (\d+) with SIGKILL", out)
    fresh_m = re.search(r"Restart the app in a fresh process (\d+)", out)
    wf_m = re.search(r"Workflow ID: (demo-order-(\w+))", out)
    assert killed_m and fresh_m and wf_m, out
    killed, fresh = int(killed_m.group(1)), int(fresh_m.group(1))
    workflow_id, run = wf_m.group(1), wf_m.group(2)
    order_id, tick_name = f"order-{run}", f"demo.tick-{run}"
    assert killed != fresh

    # The story, in order.
    _in_order(
        out,
        [
            f"[1/4] Start the app in process {killed}",
            "step 3 record_order INSERT",
            "step 4 ship_order",
            "[2/4] Crash it in the middle of step 4",
            "Steps 1-3 are checkpointed",
            "the workflow is still PENDING",
            f"[3/4] Restart the app in a fresh process {fresh}",
            "steps 1-3: replayed from their checkpoints",
            "step 4 ship_order",
            "step 5 notify_customer",
            "[4/4] What the databases recorded",
            f"orders: 1 row for {order_id}, inserted by process {killed}",
            f"dbos_transaction_completion: 1 checkpoint, for step 3 of {workflow_id}",
            "The order was recorded exactly once",
            "Inspect it yourself:",
        ],
    )
    first_part = out[: out.index("[2/4]")]
    recovery = out[out.index("[3/4]") : out.index("[4/4]")]
    for step in (1, 2, 3):  # not run again, the transaction included
        assert f"step {step} " not in recovery
        assert first_part.count(f"step {step} ") == 1
    assert "tick due" in first_part  # a tick ran before the crash
    missed_due = re.findall(r"tick due (\d\d:\d\d:\d\d) ran at [\d:.]+, [\d.]+ s late: missed", out)
    assert len(missed_due) >= 2, out
    for due in re.findall(r"tick due (\d\d:\d\d:\d\d)", out):
        assert out.count(f"tick due {due} ") == 1  # each tick's workflow body ran once
    db = tmp_path.resolve() / "dbos-sdk.sqlite"
    url = f"sqlite:///{db}"
    assert f"dbos-sdk workflow steps {workflow_id} --db-url {url}" in out
    assert f"dbos-sdk workflow list --name {tick_name} --db-url {url}" in out

    # The system database: SUCCESS after one recovery; steps 1-3 (the transaction too)
    # recorded by the killed process, 4-5 by the fresh one.
    status = cli_json("workflow", "get", workflow_id, "--db-url", url)
    assert status["status"] == "SUCCESS" and status["recovery_attempts"] == 1
    assert status["output"].endswith("customer notified")
    steps = cli_json("workflow", "steps", workflow_id, "--db-url", url)
    assert [(s["function_id"], s["function_name"], s["output"]["pid"]) for s in steps] == [
        (1, "demo.reserve_inventory", killed),
        (2, "demo.charge_payment", killed),
        (3, "demo.record_order", killed),
        (4, "demo.ship_order", fresh),
        (5, "demo.notify_customer", fresh),
    ]

    # The app database: the order row once, by the killed process, and its transaction's
    # completion checkpoint once (committed with it).
    with sqlite3.connect(tmp_path / "dbos-sdk-demo-orders.sqlite") as conn:
        rows = conn.execute(
            "SELECT recorded_by_pid FROM orders WHERE order_id = ?", (order_id,)
        ).fetchall()
        checkpoints = conn.execute(
            "SELECT function_num FROM dbos_transaction_completion WHERE workflow_id = ?",
            (workflow_id,),
        ).fetchall()
    conn.close()
    assert rows == [(killed,)]
    assert checkpoints == [(3,)]

    # The schedule: one workflow per tick, unique IDs 2 s apart (no gap), all SUCCESS; the
    # ticks due while no app ran were run, late, by the fresh process.
    ticks = cli_json("workflow", "list", "--name", tick_name, "--limit", "0", "--db-url", url)
    ids = [t["workflow_id"] for t in ticks]
    assert len(set(ids)) == len(ids) >= 3
    times = sorted(_tick_time(i, tick_name) for i in ids)
    assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(times))
    by_time = {_tick_time(t["workflow_id"], tick_name): t for t in ticks}
    assert {t["status"] for t in ticks} == {"SUCCESS"}
    assert by_time[times[0]]["output"]["pid"] == killed
    for due in missed_due:
        tick = next(t for when, t in by_time.items() if when.strftime("%H:%M:%S") == due)
        assert tick["output"]["pid"] == fresh
        late = datetime.fromisoformat(tick["output"]["actual"]) - datetime.fromisoformat(
            tick["output"]["scheduled"]
        )
        assert late > timedelta(seconds=0.5)


def test_demo_json_on_postgres_reports_what_ran_where(
    pg_url: str, pg_schema: str, tmp_path: Path
) -> None:
    args = ["--db-url", pg_url, "--schema", pg_schema]
    proc = subprocess.run(
        [sys.executable, "-m", "dbos_sdk", "demo", "--json", *args],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != DB_URL_ENV},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "SUCCESS" and summary["killed_in_step"] == 4
    killed, fresh = summary["killed_pid"], summary["recovered_pid"]
    assert killed != fresh
    assert [(s["step"], s["ran_in"], s["ran_in_pid"], s["runs"]) for s in summary["steps"]] == [
        (1, "first", killed, 1),
        (2, "first", killed, 1),
        (3, "first", killed, 1),
        (4, "recovery", fresh, 2),
        (5, "recovery", fresh, 1),
    ]
    assert summary["order"] == {
        "order_id": summary["order"]["order_id"],
        "rows": 1,
        "inserted_by": [killed],
        "transaction_step": 3,
        "checkpoints": 1,
    }
    assert summary["app_database"] == str(tmp_path.resolve() / "dbos-sdk-demo-orders.sqlite")
    ticks = summary["ticks"]
    missed = [t for t in ticks if t["missed"]]
    assert len(missed) >= 2 and {t["ran_in_pid"] for t in missed} == {fresh}
    assert ticks[0]["ran_in_pid"] == killed

    code, out, err = cli("workflow", "steps", summary["workflow_id"], "--json", *args)
    assert code == EXIT_OK, err
    assert [s["output"]["pid"] for s in json.loads(out)] == [killed] * 3 + [fresh] * 2
    code, out, err = cli(
        "workflow", "list", "--name", summary["tick_workflow"], "--json", "--oldest-first", *args
    )
    assert code == EXIT_OK, err
    assert [t["workflow_id"] for t in json.loads(out)] == [t["workflow_id"] for t in ticks]


# --- the entry points and the package boundary ---------------------------------------------


def test_the_cli_imports_the_demo_and_its_plugin_only_for_the_demo_command() -> None:
    probe = (
        "import sys\n"
        "from dbos_sdk._cli import main\n"
        "assert main(['--help']) == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith(('dbos_sdk_demo', 'dbos_sqlite'))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_the_demo_on_an_unreachable_database_exits_3_naming_it() -> None:
    code, out, err = cli("demo", "--db-url", "postgresql://postgres@127.0.0.1:1/nothing")
    assert code == EXIT_DATABASE, out + err
    assert "Cannot connect" in err and "127.0.0.1:1" in err


def test_the_app_process_without_settings_says_how_to_run_the_demo(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != SETTINGS_ENV}
    proc = subprocess.run(
        [sys.executable, "-m", "dbos_sdk_demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert f"${SETTINGS_ENV}" in proc.stderr and "run `dbos-sdk demo`" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no database was created


# --- the demo's checks catch what they claim to --------------------------------------------


@attrs.frozen
class FakeRun:
    """What an app process told the parent, without a process."""

    pid: int
    started_at: float
    ran_steps: list[int] = attrs.Factory(list)
    ticks: list[Event] = attrs.Factory(list)


T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NAME = "demo.tick-test"


def _tick(run: FakeRun, seconds: int, late: float = 0.01) -> WorkflowStatus:
    """Record that ``run`` ran the tick due ``seconds`` after T0; its workflow status."""
    due = T0 + timedelta(seconds=seconds)
    workflow_id = f"sched-{NAME}-{due.isoformat()}"
    actual = (due + timedelta(seconds=late)).isoformat()
    run.ticks.append(
        Event(
            kind="tick",
            pid=run.pid,
            at=0.0,
            workflow_id=workflow_id,
            scheduled=due.isoformat(),
            actual=actual,
        )
    )
    return WorkflowStatus(
        workflow_id=workflow_id,
        status="SUCCESS",
        name=NAME,
        class_name=None,
        config_name=None,
        input=None,
        output={"scheduled": due.isoformat(), "actual": actual, "pid": run.pid},
        error=None,
        executor_id="demo-app-test",
        application_version="",
        queue_name=None,
        priority=0,
        authenticated_user=None,
        assumed_role=None,
        authenticated_roles=None,
        created_at=0,
        updated_at=0,
        started_at=None,
        completed_at=None,
        timeout_ms=None,
        deadline_epoch_ms=None,
        recovery_attempts=0,
        forked_from=None,
    )


def _runs() -> tuple[FakeRun, FakeRun, float]:
    """A first process killed at T0+1 s, a second started at T0+5 s; the kill time."""
    first = FakeRun(pid=100, started_at=T0.timestamp() - 1)
    second = FakeRun(pid=200, started_at=T0.timestamp() + 5)
    return first, second, T0.timestamp() + 1


def test_the_tick_check_accepts_missed_ticks_run_once_after_the_restart() -> None:
    first, second, killed_at = _runs()
    statuses = [_tick(first, 0), _tick(second, 2, late=3.1), _tick(second, 4, late=1.1)]
    rows = check_ticks(
        statuses,
        (first, second),
        workflow_name=NAME,
        every_s=2,
        killed_at=killed_at,
        missed_at_least=2,
    )
    assert [(r.ran_in_pid, r.missed) for r in rows] == [(100, False), (200, True), (200, True)]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("gap", "2 s apart"),
        ("ran twice", "should have run once"),
        ("not caught up", "at least 2 ticks fell due"),
        ("none before the kill", "before it was killed"),
    ],
)
def test_the_tick_check_fails_the_demo_when_a_tick_is_lost_or_repeated(
    case: str, message: str
) -> None:
    first, second, killed_at = _runs()
    statuses = [_tick(first, 0), _tick(second, 2, late=3.1), _tick(second, 4, late=1.1)]
    if case == "gap":
        statuses.append(_tick(second, 8))
    elif case == "ran twice":
        _tick(second, 0)  # the body ran again after the restart
    elif case == "not caught up":
        statuses, second.ticks[:] = statuses[:2], second.ticks[:1]
    elif case == "none before the kill":
        statuses, first.ticks[:] = statuses[1:], []
    with pytest.raises(DemoError, match=message):
        check_ticks(
            statuses,
            (first, second),
            workflow_name=NAME,
            every_s=2,
            killed_at=killed_at,
            missed_at_least=2,
        )


@pytest.mark.parametrize(
    "order",
    [
        OrderRows(rows=2, written_by=(100, 200), checkpoints=1),  # the transaction ran twice
        OrderRows(rows=1, written_by=(200,), checkpoints=1),  # redone after the restart
        OrderRows(rows=1, written_by=(100,), checkpoints=0),  # no completion checkpoint
    ],
)
def test_the_order_check_fails_the_demo_unless_one_row_and_one_checkpoint(
    order: OrderRows,
) -> None:
    check_order(OrderRows(rows=1, written_by=(100,), checkpoints=1), "order-x", 3, 100)
    with pytest.raises(DemoError, match="should hold 1 row for order-x"):
        check_order(order, "order-x", 3, 100)
