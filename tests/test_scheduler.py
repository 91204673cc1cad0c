"""The cron scheduler (dbos_sdk.scheduler): ticks, catch-up after real outages (a clean
shutdown and a SIGKILL), when_active, queues, idempotent workflow IDs across processes,
and the errors for bad schedules.
"""

import ast
import asyncio
import logging
import threading
import time
from collections.abc import Callable, Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from queue import Empty

import pytest
from beartype.roar import BeartypeCallHintParamViolation

import dbos_sdk.scheduler
from children import sched_worker
from children.harness import Child, Spawner
from dbos_sdk import (
    DBOS,
    DBOSConfig,
    DBOSExternalState,
    DBOSLaunchError,
    DBOSNotLaunchedError,
    DBOSRegistrationError,
    Queue,
    SetWorkflowID,
)

Tick = tuple[datetime, datetime]
"""(scheduled_time, actual_time) as a workflow received them."""


@pytest.fixture
def pg_config(pg_url: str, pg_schema: str) -> Generator[DBOSConfig, None, None]:
    """A Postgres config for tests with child processes; DBOS is shut down before the
    schema is dropped."""
    yield DBOSConfig("sched-test", system_database_url=pg_url, postgres_schema=pg_schema)
    DBOS.shutdown(workflow_timeout_s=2)


@pytest.fixture
def spawn(tmp_path: Path) -> Generator[Spawner, None, None]:
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.cleanup()


def wait_for(cond: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def sched_id(name: str, tick: datetime) -> str:
    return f"sched-{name}-{tick.isoformat()}"


def assert_consecutive_seconds(ticks: list[datetime]) -> None:
    """Every second from the first tick to the last, each exactly once."""
    assert ticks == sorted(set(ticks)), f"duplicate or unordered ticks: {ticks}"
    assert ticks, "no ticks"
    expected = [ticks[0] + timedelta(seconds=i) for i in range(len(ticks))]
    assert ticks == expected, f"missing ticks: {sorted(set(expected) - set(ticks))}"


def workflow_ids(name: str) -> set[str]:
    return {w.workflow_id for w in DBOS.list_workflows(name=name, load_output=False)}


# --- the contract -------------------------------------------------------------------------


def test_the_scheduler_imports_only_the_public_api() -> None:
    path = Path(dbos_sdk.scheduler.__file__)
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative imports would hide what the scheduler uses"
            assert node.module is not None
            modules.append(node.module)
            modules.extend(f"{node.module}.{alias.name}" for alias in node.names)
    ours = [m for m in modules if m.split(".")[0] == "dbos_sdk"]
    assert ours, "the scheduler should build on dbos_sdk"
    private = [m for m in ours if any(part.startswith("_") for part in m.split("."))]
    assert private == []
    public = {"dbos_sdk", "dbos_sdk.receiver", "dbos_sdk.errors"}
    assert {m for m in ours if m not in public and m.rsplit(".", 1)[0] not in public} == set()


# --- ticks --------------------------------------------------------------------------------


def test_ticks_fire_each_second_with_scheduled_and_actual_time(dbos: DBOS) -> None:
    sync_ticks: list[Tick] = []
    async_ticks: list[Tick] = []

    @DBOS.scheduled("* * * * * *", mode="when_active")
    @DBOS.workflow()
    def every_second(scheduled_time: datetime, actual_time: datetime) -> None:
        sync_ticks.append((scheduled_time, actual_time))

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow()
    async def every_second_async(scheduled_time: datetime, actual_time: datetime) -> None:
        await asyncio.sleep(0)
        async_ticks.append((scheduled_time, actual_time))

    launched = datetime.now(UTC)
    DBOS.launch()
    wait_for(lambda: len(sync_ticks) >= 2 and len(async_ticks) >= 2, what="two ticks each")
    for name, ticks in (
        (every_second.__qualname__, list(sync_ticks)),
        (every_second_async.__qualname__, list(async_ticks)),
    ):
        scheduled = [s for s, _ in ticks]
        assert_consecutive_seconds(scheduled)
        for s, a in ticks:
            assert s.tzinfo == UTC and a.tzinfo == UTC
            assert s.microsecond == 0 and s > launched
            assert timedelta(0) <= a - s < timedelta(seconds=1), (s, a)
        assert {sched_id(name, s) for s in scheduled} <= workflow_ids(name)
        status = DBOS.get_workflow_status(sched_id(name, scheduled[0]))
        assert status is not None and status.input == (ticks[0], {})


def test_a_tick_started_again_with_its_id_does_not_run_again(dbos: DBOS) -> None:
    runs: list[datetime] = []

    @DBOS.step()
    def effect(t: datetime) -> None:
        runs.append(t)

    @DBOS.scheduled("* * * * * *", mode="when_active")
    @DBOS.workflow()
    def once_per_tick(scheduled_time: datetime, actual_time: datetime) -> None:
        effect(scheduled_time)

    DBOS.launch()
    wait_for(lambda: len(runs) >= 1, what="a tick")
    first = runs[0]
    wfid = sched_id(once_per_tick.__qualname__, first)
    wait_for(lambda: DBOS.retrieve_workflow(wfid).get_status().status == "SUCCESS")
    with SetWorkflowID(wfid):
        once_per_tick(first, datetime.now(UTC))  # what a second scheduler would do
    assert runs.count(first) == 1


# --- catching up after downtime ---------------------------------------------------------------


def test_exactly_once_runs_each_tick_missed_during_a_3s_outage_once(dbos: DBOS) -> None:
    effects: list[Tick] = []

    @DBOS.step()
    def effect(s: datetime, a: datetime) -> None:
        effects.append((s, a))

    @DBOS.scheduled("* * * * * *")  # exactly_once_per_interval is the default
    @DBOS.workflow()
    def catch_up(scheduled_time: datetime, actual_time: datetime) -> None:
        effect(scheduled_time, actual_time)

    DBOS.launch()
    wait_for(lambda: len(effects) >= 2, what="two ticks before the outage")
    DBOS.shutdown()
    down_at = datetime.now(UTC)
    before = len(effects)
    time.sleep(3)
    relaunched = datetime.now(UTC)
    DBOS.launch()
    wait_for(
        lambda: any(s > relaunched + timedelta(seconds=1) for s, _ in effects),
        what="live ticks after the relaunch",
    )
    ticks = [s for s, _ in effects]
    assert_consecutive_seconds(sorted(ticks))  # no gap, no duplicate
    missed = [(s, a) for s, a in effects[before:] if down_at < s <= relaunched]
    assert len(missed) >= 2, effects
    for s, a in missed:  # run at relaunch, late, with the tick they belong to
        assert a >= relaunched > s
    name = catch_up.__qualname__
    assert workflow_ids(name) == {sched_id(name, s) for s in ticks}
    state = DBOS.get_event_dispatch_state(dbos_sdk.scheduler.SERVICE, name, "last_tick")
    assert state is not None and state.update_time is not None
    assert state.update_time >= max(ticks).timestamp() - 1


def test_catch_up_is_bounded_to_the_most_recent_ticks(
    dbos: DBOS, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(dbos_sdk.scheduler, "MAX_CATCHUP_TICKS", 3)
    name = "bounded-catch-up"
    DBOS.launch()  # a former run left its last tick an hour ago
    an_hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    DBOS.upsert_event_dispatch_state(
        DBOSExternalState(
            service=dbos_sdk.scheduler.SERVICE,
            workflow_fn_name=name,
            key="last_tick",
            value=an_hour_ago.isoformat(),
            update_time=an_hour_ago.timestamp(),
        )
    )
    DBOS.shutdown()
    ran: list[Tick] = []

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow(name=name)
    def bounded(scheduled_time: datetime, actual_time: datetime) -> None:
        ran.append((scheduled_time, actual_time))

    with caplog.at_level(logging.WARNING, logger="dbos_sdk"):
        launched = datetime.now(UTC)
        DBOS.launch()
        wait_for(lambda: len(ran) >= 3, what="the catch-up")
        caught_up = sorted(ran)[:3]
    assert all(launched - timedelta(seconds=4) < s <= launched for s, _ in caught_up)
    assert all(a >= launched for _, a in caught_up)
    assert "missed more than 3 ticks" in caplog.text and name in caplog.text


@pytest.mark.parametrize("backend", ["sqlite"])  # no database state is involved
def test_when_active_skips_the_ticks_missed_while_down(dbos: DBOS) -> None:
    ticks: list[Tick] = []

    @DBOS.scheduled("* * * * * *", mode="when_active")
    @DBOS.workflow()
    def only_when_up(scheduled_time: datetime, actual_time: datetime) -> None:
        ticks.append((scheduled_time, actual_time))

    DBOS.launch()
    wait_for(lambda: len(ticks) >= 1, what="a tick before the outage")
    DBOS.shutdown()
    down_at = datetime.now(UTC)
    time.sleep(3)
    relaunched = datetime.now(UTC)
    DBOS.launch()
    wait_for(lambda: any(s > relaunched for s, _ in ticks), what="a tick after relaunch")
    DBOS.shutdown()
    assert [s for s, _ in ticks if down_at < s <= relaunched] == []
    assert all(a - s < timedelta(seconds=1) for s, a in ticks)  # none ran late


def test_a_sigkilled_scheduler_is_caught_up_by_the_next_process(
    pg_config: DBOSConfig, spawn: Spawner
) -> None:
    child = spawn(
        "sched_worker",
        {
            "url": pg_config.system_database_url,
            "schema": pg_config.postgres_schema,
            "executor_id": pg_config.executor_id,  # this process recovers its workflows
            "mode": "exactly_once_per_interval",
        },
    )
    _wait_ran(child, 2)
    # Kill it mid-second, well away from the instant a tick's step runs.
    time.sleep(0.5 - (time.time() % 1.0) + (1.0 if time.time() % 1.0 > 0.5 else 0.0))
    child.sigkill()
    child_ran = [line.split(" ", 1)[1] for line in child.seen if line.startswith("ran ")]
    killed_at = datetime.now(UTC)
    time.sleep(3)
    ours: list[str] = []
    sched_worker.define("exactly_once_per_interval", out=ours)
    DBOS(pg_config)
    relaunched = datetime.now(UTC)
    DBOS.launch()
    wait_for(
        lambda: any(datetime.fromisoformat(t) > relaunched + timedelta(seconds=1) for t in ours),
        what="live ticks in the new process",
    )
    ran = sorted(datetime.fromisoformat(t) for t in [*child_ran, *ours])
    assert_consecutive_seconds(ran)  # every tick ran once, across the crash
    assert sum(1 for t in ran if killed_at < t <= relaunched) >= 2
    ids = workflow_ids(sched_worker.WORKFLOW)
    assert {sched_id(sched_worker.WORKFLOW, t) for t in ran} <= ids


def test_two_processes_scheduling_one_workflow_run_each_tick_once(
    pg_config: DBOSConfig, spawn: Spawner
) -> None:
    children = [
        spawn(
            "sched_worker",
            {
                "url": pg_config.system_database_url,
                "schema": pg_config.postgres_schema,
                "executor_id": f"executor-{i}",
                "mode": "when_active",
            },
            label=f"scheduler{i}",
        )
        for i in range(2)
    ]
    for c in children:
        c.expect("launched")
    both_up = datetime.now(UTC)

    def all_ran() -> list[datetime]:
        return sorted(
            datetime.fromisoformat(line.split(" ", 1)[1])
            for c in children
            for line in c.seen
            if line.startswith("ran ")
        )

    def four_ticks_while_both_up() -> bool:
        for c in children:
            _drain(c)
        return sum(1 for t in all_ran() if t > both_up) >= 4

    wait_for(four_ticks_while_both_up, timeout=15, what="four ticks")
    for c in children:
        c.send("stop")
    for c in children:
        c.expect("stopped")
        assert c.wait_exit() == 0
    ran = [t for t in all_ran() if t > both_up]
    assert_consecutive_seconds(ran)  # each tick exactly once, though both scheduled it
    DBOS(pg_config)
    DBOS.launch()
    ids = workflow_ids(sched_worker.WORKFLOW)
    assert {sched_id(sched_worker.WORKFLOW, t) for t in ran} <= ids
    executors = {
        w.executor_id for w in DBOS.list_workflows(name=sched_worker.WORKFLOW, load_output=False)
    }
    assert executors <= {"executor-0", "executor-1"}


def _wait_ran(child: Child, n: int) -> None:
    child.expect("launched")
    while sum(1 for line in child.seen if line.startswith("ran ")) < n:
        child.next_lines(1, timeout=10)


def _drain(child: Child) -> None:
    """Consume what the child printed so far (the harness reads it on a thread)."""
    lines = child._lines  # pyright: ignore[reportPrivateUsage]
    while True:
        try:
            line = lines.get_nowait()
        except Empty:
            return
        if line is None:
            return
        child.seen.append(line)


# --- options ------------------------------------------------------------------------------


def test_the_queue_option_enqueues_each_tick(dbos: DBOS) -> None:
    queue = Queue("sched-q")
    ran: list[str] = []

    @DBOS.scheduled("* * * * * *", queue=queue, mode="when_active")
    @DBOS.workflow()
    def by_queue_object(scheduled_time: datetime, actual_time: datetime) -> None:
        ran.append("object")

    @DBOS.scheduled("* * * * * *", queue="sched-q", mode="when_active")
    @DBOS.workflow()
    def by_queue_name(scheduled_time: datetime, actual_time: datetime) -> None:
        ran.append("name")

    DBOS.launch()
    wait_for(lambda: {"object", "name"} <= set(ran), what="a queued tick of each")
    for func in (by_queue_object, by_queue_name):
        statuses = DBOS.list_workflows(name=func.__qualname__)
        assert statuses and all(s.queue_name == "sched-q" for s in statuses)
        assert all(s.workflow_id.startswith(f"sched-{func.__qualname__}-") for s in statuses)


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "problem"),
    [("61 * * * *", "is not a valid cron"), ("0 0 30 2 *", "never fires"), ("* *", "valid")],
)
def test_an_invalid_cron_fails_launch_naming_the_function_and_expression(
    dbos: DBOS, cron: str, problem: str
) -> None:
    @DBOS.scheduled(cron)
    @DBOS.workflow()
    def bad_cron(scheduled_time: datetime, actual_time: datetime) -> None:
        pass

    with pytest.raises(DBOSLaunchError) as caught:
        DBOS.launch()
    message = str(caught.value)
    assert "Scheduler" in message and "bad_cron" in message and repr(cron) in message
    assert problem in message
    with pytest.raises(DBOSNotLaunchedError):
        DBOS.list_workflows()


def test_bad_schedules_are_registration_errors_naming_the_function() -> None:
    def plain(scheduled_time: datetime, actual_time: datetime) -> None:
        pass

    with pytest.raises(DBOSRegistrationError, match=r"plain.*not a DBOS workflow"):
        DBOS.scheduled("* * * * *")(plain)

    with pytest.raises(DBOSRegistrationError, match=r"below.*above @DBOS\.workflow"):

        @DBOS.workflow()  # wrong order: the scheduler sees the undecorated function
        @DBOS.scheduled("* * * * *")
        def below(scheduled_time: datetime, actual_time: datetime) -> None:
            pass

    with pytest.raises(DBOSRegistrationError, match=r"one_arg.*\(scheduled_time"):

        @DBOS.scheduled("* * * * *")  # a type error too: typetests/check_scheduler.py
        @DBOS.workflow()
        def one_arg(scheduled_time: datetime) -> None:
            pass

    with pytest.raises(DBOSRegistrationError, match=r"int_arg.*actual_time cannot take"):

        @DBOS.scheduled("* * * * *")  # a type error too: typetests/check_scheduler.py
        @DBOS.workflow()
        def int_arg(scheduled_time: datetime, actual_time: int) -> None:
            pass

    with pytest.raises(DBOSRegistrationError, match="needs_more"):

        @DBOS.scheduled("* * * * *")  # a type error too: typetests/check_scheduler.py
        @DBOS.workflow()
        def needs_more(scheduled_time: datetime, actual_time: datetime, *, key: str) -> None:
            pass

    # (Under beartype, as in this test run, the Literal type already rejects it.)
    with pytest.raises((DBOSRegistrationError, BeartypeCallHintParamViolation), match="sometimes"):
        DBOS.scheduled("* * * * *", mode="sometimes")  # type: ignore[arg-type]

    @DBOS.scheduled("* * * * *")
    @DBOS.workflow()
    def twice(scheduled_time: datetime, actual_time: datetime, extra: int = 0) -> None:
        pass

    with pytest.raises(DBOSRegistrationError, match=r"twice.*already scheduled"):
        DBOS.scheduled("*/5 * * * *")(twice)


def test_scheduling_after_launch_is_a_registration_error(dbos: DBOS) -> None:
    @DBOS.workflow()
    def late(scheduled_time: datetime, actual_time: datetime) -> None:
        pass

    DBOS.launch()
    with pytest.raises(DBOSRegistrationError, match=r"late.*after DBOS\.launch"):
        DBOS.scheduled("* * * * *")(late)


def test_destroy_stops_the_scheduler_threads(dbos: DBOS) -> None:
    @DBOS.scheduled("* * * * * *", mode="when_active")
    @DBOS.workflow()
    def ticking(scheduled_time: datetime, actual_time: datetime) -> None:
        pass

    DBOS.launch()
    assert any(t.name == f"dbos-scheduler-{ticking.__qualname__}" for t in threading.enumerate())
    DBOS.shutdown()
    assert not any(t.name.startswith("dbos-scheduler-") for t in threading.enumerate())
