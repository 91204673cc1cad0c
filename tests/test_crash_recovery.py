"""Crash recovery, proved by SIGKILL of real processes, on SQLite and Postgres.

A child process runs :func:`children.crash_app.five_steps` (five steps, each appending a
line to a file) and stops at an exact point: right after step k's checkpoint committed, or
inside step k's body. The test SIGKILLs it there, then this process launches with the
child's executor ID, recovers the workflow, and counts the lines each step body wrote.
"""

import logging
from collections.abc import Generator
from pathlib import Path

import pytest

from children import crash_app
from children.harness import Child, Spawner
from conftest import ConfigFactory
from dbos_sdk import DBOS, DBOSConfig, DBOSMaxRecoveryAttemptsExceededError

EXECUTOR = "crash-executor"


@pytest.fixture
def make_config(make_config: ConfigFactory) -> Generator[ConfigFactory, None, None]:
    """The conftest factory, with DBOS shut down before the test's schema is dropped."""
    yield make_config
    DBOS.shutdown(workflow_timeout_s=2)


@pytest.fixture
def spawn(tmp_path: Path) -> Generator[Spawner, None, None]:
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.cleanup()


def child_args(config: DBOSConfig, executor_id: str, crash: tuple[str, int]) -> dict[str, object]:
    return {
        "url": config.resolved_system_database_url,
        "schema": config.postgres_schema,
        "executor_id": executor_id,
        "crash": list(crash),
    }


def crash_child(
    spawn: Spawner,
    config: DBOSConfig,
    crash: tuple[str, int],
    runs: list[tuple[str, Path]],
    workflow: str = "five_steps",
    stops: list[str] | None = None,
) -> Child:
    """Run ``workflow`` for each of ``runs`` in a child until each reaches ``crash``
    (``stops``: the workflow IDs that print there, by default those of ``runs``); then
    SIGKILL the child."""
    args = child_args(config, EXECUTOR, crash)
    args["run"] = [[wfid, str(path)] for wfid, path in runs]
    args["workflow"] = workflow
    child = spawn("crash_app", args)
    where, k = crash
    child.expect(f"{wfid} {where} step {k}" for wfid in (stops or [w for w, _ in runs]))
    child.sigkill()
    return child


def recorded_steps_as_bystander(make_config: ConfigFactory, workflow_id: str) -> list[int]:
    """What the killed child left in the database, read by another executor (which does
    not recover the child's workflows), checking the workflow is still PENDING."""
    DBOS(make_config(executor_id="bystander"))
    DBOS.launch()
    try:
        status = DBOS.get_workflow_status(workflow_id)
        assert status is not None
        assert (status.status, status.executor_id, status.recovery_attempts) == (
            "PENDING",
            EXECUTOR,
            0,
        )
        return [s.function_id for s in DBOS.get_workflow_steps(workflow_id)]
    finally:
        DBOS.shutdown()


def recover_and_check_result(make_config: ConfigFactory, workflow_id: str) -> None:
    """Launch as the child's executor: recovery finishes the workflow with the right result,
    every step recorded once with its own output."""
    DBOS(make_config(executor_id=EXECUTOR))
    DBOS.launch()
    handle = DBOS.retrieve_workflow(workflow_id)
    assert handle.get_result(timeout=30) == crash_app.EXPECTED_RESULT
    status = handle.get_status()
    assert (status.status, status.output, status.recovery_attempts) == (
        "SUCCESS",
        crash_app.EXPECTED_RESULT,
        1,
    )
    steps = DBOS.get_workflow_steps(workflow_id)
    assert [(s.function_id, s.output) for s in steps] == [
        (i, i * i) for i in range(1, crash_app.STEPS + 1)
    ]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("k", range(1, crash_app.STEPS + 1))
def test_sigkill_right_after_step_k_checkpoint_then_recovery_runs_every_step_exactly_once(
    k: int, make_config: ConfigFactory, spawn: Spawner, tmp_path: Path
) -> None:
    out = tmp_path / "steps.txt"
    crash_child(spawn, make_config(), ("after", k), [("wf-after", out)])
    # The child printed after step k returned, i.e. after its checkpoint committed.
    assert recorded_steps_as_bystander(make_config, "wf-after") == list(range(1, k + 1))
    assert crash_app.step_counts(str(out)) == [1] * k + [0] * (crash_app.STEPS - k)
    recover_and_check_result(make_config, "wf-after")
    assert crash_app.step_counts(str(out)) == [1] * crash_app.STEPS


@pytest.mark.timeout(60)
@pytest.mark.parametrize("k", range(1, crash_app.STEPS + 1))
def test_sigkill_inside_step_k_then_recovery_reruns_only_step_k(
    k: int, make_config: ConfigFactory, spawn: Spawner, tmp_path: Path
) -> None:
    out = tmp_path / "steps.txt"
    crash_child(spawn, make_config(), ("inside", k), [("wf-inside", out)])
    assert recorded_steps_as_bystander(make_config, "wf-inside") == list(range(1, k))
    assert crash_app.step_counts(str(out)) == [1] * k + [0] * (crash_app.STEPS - k)
    recover_and_check_result(make_config, "wf-inside")
    # Steps before k replayed from their checkpoints; step k's body had run (its line was
    # written) but was not recorded, so it ran again: at least once, here exactly twice.
    expected = [1] * crash_app.STEPS
    expected[k - 1] = 2
    assert crash_app.step_counts(str(out)) == expected


@pytest.mark.postgres
@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["postgres"])
def test_each_executor_recovers_only_its_own_pending_workflows_on_shared_postgres(
    make_config: ConfigFactory, spawn: Spawner, tmp_path: Path
) -> None:
    config = make_config()
    files = {name: tmp_path / f"{name}.txt" for name in ("a1", "a2", "b1")}
    children: list[Child] = []
    for executor, wfids in (("executor-a", ["a1", "a2"]), ("executor-b", ["b1"])):
        args = child_args(config, executor, ("inside", 2))
        args["run"] = [[wfid, str(files[wfid])] for wfid in wfids]
        child = spawn("crash_app", args, label=executor)
        children.append(child)
    # Both executors run at once on one schema, then both are killed inside step 2.
    children[0].expect(["a1 inside step 2", "a2 inside step 2"])
    children[1].expect("b1 inside step 2")
    for child in children:
        child.sigkill()

    DBOS(make_config(executor_id="executor-a"))
    DBOS.launch()
    for wfid in ("a1", "a2"):
        assert DBOS.retrieve_workflow(wfid).get_result(timeout=30) == crash_app.EXPECTED_RESULT
    b1 = DBOS.get_workflow_status("b1")
    assert b1 is not None
    assert (b1.status, b1.executor_id, b1.recovery_attempts) == ("PENDING", "executor-b", 0)
    assert crash_app.step_counts(str(files["b1"])) == [1, 1, 0, 0, 0]
    DBOS.shutdown()

    DBOS(make_config(executor_id="executor-b"))
    DBOS.launch()
    assert DBOS.retrieve_workflow("b1").get_result(timeout=30) == crash_app.EXPECTED_RESULT
    for wfid in ("a1", "a2", "b1"):
        status = DBOS.get_workflow_status(wfid)
        assert status is not None and status.recovery_attempts == 1, wfid
        assert crash_app.step_counts(str(files[wfid])) == [1, 2, 1, 1, 1], wfid


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["after", "inside"])
def test_sigkill_in_an_async_workflow_then_recovery_runs_it_on_the_event_loop_once(
    where: str, make_config: ConfigFactory, spawn: Spawner, tmp_path: Path
) -> None:
    out = tmp_path / "steps.txt"
    crash_child(spawn, make_config(), (where, 3), [("wf-async", out)], "five_async_steps")
    recover_and_check_result(make_config, "wf-async")
    assert crash_app.step_counts(str(out)) == [1, 1, 2 if where == "inside" else 1, 1, 1]


@pytest.mark.timeout(60)
def test_sigkill_inside_a_child_workflow_then_recovery_finishes_child_and_parent_once(
    make_config: ConfigFactory, spawn: Spawner, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "steps.txt"
    crash_child(
        spawn, make_config(), ("inside", 2), [("parent", out)], "parent_of_five", ["parent-1"]
    )
    DBOS(make_config(executor_id=EXECUTOR))
    DBOS.launch()  # recovers both the parent and its child: each must run once
    assert DBOS.retrieve_workflow("parent").get_result(timeout=30) == crash_app.EXPECTED_RESULT + 1
    assert DBOS.retrieve_workflow("parent-1").get_result(timeout=30) == crash_app.EXPECTED_RESULT
    assert crash_app.step_counts(str(out)) == [1, 2, 1, 1, 1]
    assert [s.child_workflow_id for s in DBOS.get_workflow_steps("parent")] == ["parent-1"]
    parent = DBOS.get_workflow_status("parent")
    assert parent is not None and parent.recovery_attempts == 1
    # Recovery also found the child PENDING; the recovered parent may have run it first,
    # and then recovery leaves it alone, without counting or reporting anything.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.timeout(60)
def test_a_workflow_killed_in_every_recovery_stops_being_recovered_after_max_attempts(
    make_config: ConfigFactory, spawn: Spawner, tmp_path: Path
) -> None:
    out = tmp_path / "steps.txt"
    config = make_config()
    crash_child(spawn, config, ("inside", 1), [("poison", out)])
    for attempt in (1, 2):  # each launch recovers it, and it is killed at the same place
        args = child_args(config, EXECUTOR, ("inside", 1))
        args["max_recovery_attempts"] = 2
        child = spawn("crash_app", args, label=f"recovery{attempt}")
        child.expect("poison inside step 1")
        child.sigkill()
    assert crash_app.step_counts(str(out)) == [3, 0, 0, 0, 0]

    DBOS(make_config(executor_id=EXECUTOR, max_recovery_attempts=2))
    DBOS.launch()  # the third recovery is one too many: marked, and not run
    handle = DBOS.retrieve_workflow("poison")
    with pytest.raises(DBOSMaxRecoveryAttemptsExceededError, match="resume_workflow"):
        handle.get_result(timeout=10)
    assert handle.get_status().status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED"
    assert crash_app.step_counts(str(out)) == [3, 0, 0, 0, 0]
    assert DBOS.resume_workflow("poison").get_result(timeout=30) == crash_app.EXPECTED_RESULT
    assert crash_app.step_counts(str(out)) == [4, 1, 1, 1, 1]
