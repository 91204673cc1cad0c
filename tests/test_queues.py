"""Queues: limits measured from the recorded timestamps, ordering, idempotent enqueue,
and queued workflows that outlive a SIGKILLed process. Multi-process tests run on
Postgres (several processes share it); the rest on both backends."""

import threading
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import pytest

from children import crash_app
from children.harness import Spawner, max_overlap
from conftest import ConfigFactory
from dbos_sdk import (
    DBOS,
    DBOSConflictingWorkflowError,
    DBOSQueueError,
    Queue,
    QueueRateLimit,
    SetWorkflowID,
    SetWorkflowOptions,
    WorkflowStatus,
)
from dbos_sdk._runtime import current_runtime
from dbos_sdk._sysdb import QueueLimits, WorkflowRow


@pytest.fixture
def spawn(tmp_path: Path) -> Generator[Spawner, None, None]:
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.cleanup()


def intervals(statuses: list[WorkflowStatus]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in statuses:
        assert s.started_at is not None and s.completed_at is not None, s.workflow_id
        out.append((s.started_at, s.completed_at))
    return out


def wait_until_done(queue_name: str, total: int, timeout: float) -> list[WorkflowStatus]:
    """Poll the system database until ``total`` workflows of the queue succeeded."""
    end = time.monotonic() + timeout
    while True:
        done = DBOS.list_workflows(queue_name=queue_name, status="SUCCESS", load_output=False)
        if len(done) >= total:
            return DBOS.list_workflows(queue_name=queue_name)
        if time.monotonic() > end:
            left = DBOS.list_workflows(queue_name=queue_name, status=["ENQUEUED", "PENDING"])
            raise AssertionError(f"{len(done)}/{total} done after {timeout}s; {len(left)} left")
        time.sleep(0.1)


def next_millisecond() -> None:
    """Return once the wall clock's millisecond has changed, so that the next enqueue gets
    a later created_at than the previous one (queues order by it, to the millisecond)."""
    start = int(time.time() * 1000)
    while int(time.time() * 1000) == start:
        pass


@pytest.mark.postgres
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize(
    ("concurrency", "worker_concurrency"),
    [(6, 4), (None, 3)],
    ids=["global-lock", "skip-locked-only"],
)
def test_two_worker_processes_drain_500_workflows_once_each_within_both_concurrency_limits(
    concurrency: int | None,
    worker_concurrency: int,
    make_config: ConfigFactory,
    spawn: Spawner,
    tmp_path: Path,
) -> None:
    per_worker = 250
    config = make_config()
    queue_name = "multi_process_drain"  # never declared in this process: it only observes
    workers = {}
    for name in ("worker-a", "worker-b"):
        workers[name] = spawn(
            "queue_worker",
            {
                "url": config.resolved_system_database_url,
                "schema": config.postgres_schema,
                "executor_id": name,
                "queue": queue_name,
                "concurrency": concurrency,
                "worker_concurrency": worker_concurrency,
                "out": str(tmp_path / f"{name}.txt"),
            },
            label=name,
        )
    for w in workers.values():
        w.expect("ready")  # both launched (and migrated the fresh schema) concurrently
    DBOS(make_config(executor_id="observer"))
    DBOS.launch()
    for prefix, w in zip("ab", workers.values(), strict=True):
        w.send(f"enqueue {per_worker} {prefix}")
    for w in workers.values():
        w.expect("enqueued")
    statuses = wait_until_done(queue_name, 2 * per_worker, timeout=90)
    for w in workers.values():
        w.send("stop")
        w.expect("stopped")
        assert w.wait_exit() == 0

    expected_ids = {f"{p}-{i}" for p in "ab" for i in range(per_worker)}
    assert {s.workflow_id for s in statuses} == expected_ids
    assert all(s.status == "SUCCESS" and s.output == int(s.workflow_id[2:]) for s in statuses)
    # Side effects: every workflow's step wrote one line, in the process that ran it.
    ran_by: dict[str, list[str]] = {}
    for name in workers:
        for wfid in (tmp_path / f"{name}.txt").read_text().split():
            ran_by.setdefault(wfid, []).append(name)
    assert set(ran_by) == expected_ids
    ran_twice = {wfid: names for wfid, names in ran_by.items() if len(names) != 1}
    assert ran_twice == {}
    assert all(ran_by[s.workflow_id] == [s.executor_id] for s in statuses)

    overall = max_overlap(intervals(statuses))
    per_executor = {
        name: max_overlap(intervals([s for s in statuses if s.executor_id == name]))
        for name in workers
    }
    assert overall <= (concurrency or 2 * worker_concurrency), overall
    assert all(n <= worker_concurrency for n in per_executor.values()), per_executor
    # Both processes did work at the same time (one alone cannot exceed worker_concurrency).
    assert overall > worker_concurrency, (overall, per_executor)


@pytest.mark.timeout(60)
def test_concurrency_and_worker_concurrency_bound_the_workflows_running_in_one_process(
    make_config: ConfigFactory,
) -> None:
    queues = {
        "global3": Queue("limits.global3", concurrency=3),
        "local2": Queue("limits.local2", worker_concurrency=2),
    }
    lock = threading.Lock()
    running = dict.fromkeys(queues, 0)
    most = dict.fromkeys(queues, 0)

    @DBOS.step()
    def occupy(key: str) -> None:
        with lock:
            running[key] += 1
            most[key] = max(most[key], running[key])
        time.sleep(0.05)
        with lock:
            running[key] -= 1

    @DBOS.workflow()
    def limited(key: str) -> str:
        occupy(key)
        return key

    DBOS(make_config())
    DBOS.launch()
    handles = [q.enqueue(limited, key) for key, q in queues.items() for _ in range(8)]
    assert sorted(h.get_result(timeout=30) for h in handles) == ["global3"] * 8 + ["local2"] * 8
    assert most == {"global3": 3, "local2": 2}
    for key, q in queues.items():
        statuses = DBOS.list_workflows(queue_name=q.name)
        assert len(statuses) == 8
        assert max_overlap(intervals(statuses)) == most[key]


@pytest.mark.timeout(60)
def test_rate_limiter_starts_at_most_limit_workflows_in_any_period(
    make_config: ConfigFactory,
) -> None:
    limit, period_ms = 3, 400
    q = Queue("rate_limited", limiter=QueueRateLimit(limit=limit, period=period_ms / 1000))

    @DBOS.workflow()
    def quick(i: int) -> int:
        return i

    DBOS(make_config())
    DBOS.launch()
    handles = [q.enqueue(quick, i) for i in range(3 * limit)]
    assert [h.get_result(timeout=30) for h in handles] == list(range(3 * limit))
    starts = sorted(s.started_at or 0 for s in DBOS.list_workflows(queue_name=q.name))
    # Any `limit + 1` consecutive starts span at least one period.
    gaps = [starts[i + limit] - starts[i] for i in range(len(starts) - limit)]
    assert min(gaps) >= period_ms, (starts, gaps)
    assert starts[-1] - starts[0] >= 2 * period_ms


@pytest.mark.timeout(60)
def test_priority_queue_starts_lower_priority_values_first_then_oldest_first(
    make_config: ConfigFactory,
) -> None:
    q = Queue("prioritized", concurrency=1, priority_enabled=True)
    order: list[str] = []
    started, release = threading.Event(), threading.Event()

    @DBOS.workflow()
    def blocker() -> None:
        started.set()
        assert release.wait(20)

    @DBOS.workflow()
    def tagged(tag: str) -> str:
        order.append(tag)
        return tag

    DBOS(make_config())
    DBOS.launch()
    first = q.enqueue(blocker)
    assert started.wait(20)  # the queue's one slot is taken: the rest wait, and get sorted
    handles = []
    for tag, priority in [("p5a", 5), ("p1a", 1), ("p3", 3), ("p1b", 1), ("p0", 0), ("p5b", 5)]:
        next_millisecond()
        with SetWorkflowOptions(priority=priority):
            handles.append(q.enqueue(tagged, tag))
    release.set()
    first.get_result(timeout=20)
    for h in handles:
        h.get_result(timeout=20)
    assert order == ["p0", "p1a", "p1b", "p3", "p5a", "p5b"]
    statuses = {s.workflow_id: s for s in DBOS.list_workflows(queue_name=q.name)}
    assert statuses[handles[1].workflow_id].priority == 1
    starts = [statuses[h.workflow_id].started_at or 0 for h in handles]
    assert sorted(starts) == [starts[i] for i in (4, 1, 3, 2, 0, 5)]


@pytest.mark.timeout(60)
def test_enqueue_on_an_undeclared_queue_raises_queue_error_and_records_nothing(
    make_config: ConfigFactory,
) -> None:
    @DBOS.workflow()
    def orphan() -> None:
        pass

    DBOS(make_config())
    DBOS.launch()
    with (
        SetWorkflowOptions(queue="no_such_queue"),
        pytest.raises(DBOSQueueError, match="no_such_queue"),
    ):
        DBOS.start_workflow(orphan)
    assert DBOS.list_workflows() == []


@pytest.mark.timeout(60)
def test_enqueue_with_an_existing_workflow_id_never_runs_it_twice(
    make_config: ConfigFactory,
) -> None:
    q = Queue("idempotent")
    runs: list[int] = []

    @DBOS.workflow()
    def counted(x: int) -> int:
        runs.append(x)
        return 2 * x

    @DBOS.workflow()
    def other(x: int) -> int:
        return x

    DBOS(make_config())
    DBOS.launch()
    handles = []
    for _ in range(3):
        with SetWorkflowID("dup"):
            handles.append(q.enqueue(counted, 1))
    assert [h.get_result(timeout=20) for h in handles] == [2, 2, 2]
    with SetWorkflowID("dup"):
        assert q.enqueue(counted, 1).get_result(timeout=20) == 2  # after it finished
    with SetWorkflowID("dup"):
        assert counted(1) == 2  # a direct call finds the queued run's result
    with SetWorkflowID("direct"):
        assert counted(5) == 10
    with SetWorkflowID("direct"):
        assert q.enqueue(counted, 5).get_result(timeout=20) == 10  # and the other way round
    assert runs == [1, 5]
    with SetWorkflowID("dup"), pytest.raises(DBOSConflictingWorkflowError, match="dup"):
        q.enqueue(other, 1)  # the ID belongs to another workflow
    assert {s.workflow_id: s.status for s in DBOS.list_workflows()} == {
        "dup": "SUCCESS",
        "direct": "SUCCESS",
    }


@pytest.mark.timeout(60)
def test_queued_workflows_outlive_a_sigkilled_process_and_a_new_process_finishes_them(
    make_config: ConfigFactory, spawn: Spawner, tmp_path: Path
) -> None:
    config = make_config()
    out = {wfid: tmp_path / f"{wfid}.txt" for wfid in ("q1", "q2")}
    executor = "queue-crash-executor"
    child = spawn(
        "crash_app",
        {
            "url": config.resolved_system_database_url,
            "schema": config.postgres_schema,
            "executor_id": executor,
            "crash": ["inside", 3],
            "queue": crash_app.one_at_a_time.name,
            "enqueue": [[wfid, str(path)] for wfid, path in out.items()],
        },
    )
    child.expect(["started", "q1 inside step 3"])  # q1 runs; q2 waits (concurrency=1)
    child.sigkill()

    DBOS(make_config(executor_id=executor))
    DBOS.launch()
    for wfid in out:
        assert DBOS.retrieve_workflow(wfid).get_result(timeout=30) == crash_app.EXPECTED_RESULT
    assert crash_app.step_counts(str(out["q1"])) == [1, 1, 2, 1, 1]
    assert crash_app.step_counts(str(out["q2"])) == [1, 1, 1, 1, 1]
    q1, q2 = (DBOS.get_workflow_status(wfid) for wfid in out)
    assert q1 is not None and q2 is not None
    assert (q1.recovery_attempts, q2.recovery_attempts) == (1, 0)
    assert q1.completed_at is not None and q2.started_at is not None
    assert q2.started_at >= q1.completed_at  # concurrency=1 held across the crash


@pytest.mark.timeout(60)
def test_recovered_queued_workflows_count_toward_worker_concurrency(
    make_config: ConfigFactory,
    spawn: Spawner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config()
    executor = "worker-concurrency-crash"
    out = {f"w{i}": tmp_path / f"w{i}.txt" for i in range(4)}
    child = spawn(
        "crash_app",
        {
            "url": config.resolved_system_database_url,
            "schema": config.postgres_schema,
            "executor_id": executor,
            "crash": ["inside", 1],
            "queue": crash_app.two_per_worker.name,
            "enqueue": [[wfid, str(path)] for wfid, path in out.items()],
        },
    )
    lines = child.next_lines(3)  # worker_concurrency=2: two run, two stay enqueued
    stopped = [line for line in lines if line != "started"]
    assert len(stopped) == 2 and all(line.endswith(" inside step 1") for line in stopped), lines
    child.sigkill()

    monkeypatch.setattr(crash_app, "step_seconds", 0.03)
    monkeypatch.setattr(crash_app, "max_running", 0)
    DBOS(make_config(executor_id=executor))
    DBOS.launch()
    for wfid in out:
        assert DBOS.retrieve_workflow(wfid).get_result(timeout=30) == crash_app.EXPECTED_RESULT
    statuses = DBOS.list_workflows(queue_name=crash_app.two_per_worker.name)
    recovered = {s.workflow_id for s in statuses if s.recovery_attempts == 1}
    assert recovered == {line.split()[0] for line in stopped}
    assert crash_app.max_running <= 2
    assert max_overlap(intervals(statuses)) <= 2


@pytest.mark.timeout(60)
def test_a_direct_call_racing_the_dequeue_of_its_queued_id_neither_hangs_nor_runs_twice(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forces one interleaving (by gating two internal calls, nothing faked): a direct call
    of a queued workflow's ID holds this process's claim on the ID, while the queue runner
    dequeues that workflow and fails to claim it. The direct call then only waits, so the
    dequeued workflow must still be started by someone."""
    q = Queue("raced")
    runs: list[int] = []

    @DBOS.workflow()
    def raced_workflow(x: int) -> int:
        runs.append(x)
        return x

    DBOS(make_config())
    DBOS.launch()
    rt = current_runtime()
    assert rt is not None
    gate_dequeue, direct_call_inserted, dequeue_claim_tried = (threading.Event() for _ in "abc")
    real_dequeue, real_insert, real_claim = rt.sysdb.dequeue, rt.sysdb.insert_workflow, rt.claim

    def dequeue(
        limits: QueueLimits, executor_id: str, batch: int, names: Sequence[str]
    ) -> list[WorkflowRow]:
        if limits.name == q.name and gate_dequeue.is_set():
            assert direct_call_inserted.wait(10)
        return real_dequeue(limits, executor_id, batch, names)

    def insert_workflow(row: WorkflowRow) -> WorkflowRow | None:
        existing = real_insert(row)
        if row.queue_name is None:  # the direct call, holding its claim on the ID
            direct_call_inserted.set()
            assert dequeue_claim_tried.wait(10)
        return existing

    def claim(workflow_id: str, *args: Any, **kwargs: Any) -> Any:
        result = real_claim(workflow_id, *args, **kwargs)
        if threading.current_thread().name == "dbos-queues":
            dequeue_claim_tried.set()
        return result

    monkeypatch.setattr(rt.sysdb, "dequeue", dequeue)
    monkeypatch.setattr(rt.sysdb, "insert_workflow", insert_workflow)
    monkeypatch.setattr(rt, "claim", claim)
    gate_dequeue.set()
    with SetWorkflowID("raced-id"):
        q.enqueue(raced_workflow, 7)
    with SetWorkflowID("raced-id"):
        handle = DBOS.start_workflow(raced_workflow, 7)
    assert handle.get_result(timeout=10) == 7
    assert runs == [7]
