"""The datasource method of operation, proved once for each of the five datasources
(psycopg, async psycopg, SQLAlchemy Session, AsyncSession, sqlite3) against the real
Postgres server and real SQLite files. The crash case (SIGKILL between the datasource
commit and the system-database record) is in test_datasource_crash.py.
"""

import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from children.ds_kits import KINDS, PG_KINDS, Fail, Hook, Kit, Result, Sql
from conftest import require_postgres
from dbos_sdk import DBOS, DBOSConfig, SetWorkflowID
from dbos_sdk._context import WorkflowContext, current_step, current_workflow
from dbos_sdk._registry import REGISTRY, registration_of
from dbos_sdk._sysdb import StepRow
from dbos_sdk.datasource import PGIsolationLevel, get_pg_error_code
from dbos_sdk.errors import (
    DBOSCheckpointSchemaError,
    DBOSNotInTransactionError,
    DBOSTransactionRetriesExceededError,
)
from dbos_sqlite_datasource import SQLiteBeginMode


def make_kit(kind: str, tmp_path: Path) -> Generator[Kit, None, None]:
    pg_url = schema = None
    if kind != "sqlite":
        pg_url = require_postgres()
        schema = f"ds_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    kit = Kit(kind, pg_url, schema, str(tmp_path / "app.sqlite"))
    kit.run_sql("CREATE TABLE {items} (v TEXT)")
    kit.run_sql("CREATE TABLE {counter} (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    kit.run_sql("INSERT INTO {counter} VALUES (1, 0)")
    hooks_before = list(REGISTRY.datasources)
    functions_before = dict(REGISTRY.functions)
    DBOS(DBOSConfig("ds-test", system_database_url=f"sqlite:///{tmp_path}/sys.sqlite"))
    try:
        yield kit
    finally:
        DBOS.shutdown(workflow_timeout_s=2)
        REGISTRY.datasources[:] = hooks_before
        REGISTRY.functions.clear()
        REGISTRY.functions.update(functions_before)
        if schema is not None:
            assert pg_url is not None
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=KINDS)
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Generator[Kit, None, None]:
    yield from make_kit(str(request.param), tmp_path)


@pytest.fixture(params=PG_KINDS)
def pg_kit(request: pytest.FixtureRequest, tmp_path: Path) -> Generator[Kit, None, None]:
    yield from make_kit(str(request.param), tmp_path)


def ds_name() -> str:
    return f"ds-{uuid.uuid4().hex[:8]}"


def checkpoints(kit: Kit) -> list[tuple[Any, ...]]:
    table = "{transaction_completion}" if kit.is_pg else "{dbos_transaction_completion}"
    return kit.run_sql(
        f"SELECT workflow_id, function_num, output, error, serialization FROM {table} "
        "ORDER BY workflow_id, function_num"
    )


def items(kit: Kit) -> list[str]:
    return sorted(r[0] for r in kit.run_sql("SELECT v FROM {items}"))


INSERT = Sql("INSERT INTO {items} (v) VALUES (?)", lambda a: (a[0],))


@contextlib.contextmanager
def as_step_of(workflow_id: str, recorded: dict[int, StepRow] | None) -> Iterator[None]:
    """Run the next transaction as step 1 of ``workflow_id``, as another execution of that
    workflow would: a first execution (``recorded=None``) or a resumed one (``{}``)."""
    ctx = WorkflowContext(
        workflow_id=workflow_id,
        name="another-execution",
        recorded=recorded,
        cancelled=threading.Event(),
        deadline_ms=None,
    )
    token = current_workflow.set(ctx)
    try:
        yield
    finally:
        current_workflow.reset(token)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("value", fn())
    except Exception as exc:
        return ("error", f"{type(exc).__name__}: {exc}")


def commit_in_the_datasource_only(kit: Kit, tx: Callable[..., Any], wfid: str, *args: Any) -> Any:
    """Run ``tx`` as step 1 of workflow ``wfid`` the way another execution of it would, up
    to its datasource commit, and no further: that execution never records the step in the
    system database (it died, or is still on its way there)."""
    reg = registration_of(tx)
    assert reg is not None
    with as_step_of(wfid, recorded=None):
        token = current_step.set(1)
        try:
            return kit.call(reg.func, *args)
        finally:
            current_step.reset(token)


# --- the method of operation --------------------------------------------------------------


def test_writes_and_checkpoint_commit_together_and_the_step_replays(kit: Kit) -> None:
    ds = kit.datasource(ds_name())
    runs: list[Any] = []
    insert = kit.define(ds, "insert", [Hook(runs.append), INSERT, Result(lambda _r, a: a[0] + "!")])
    wf = kit.workflow("wf_insert", insert)
    DBOS.launch()
    for _ in range(2):
        with SetWorkflowID("w1"):
            assert kit.call(wf, "a") == "a!"
    assert runs == [("a",)]
    assert items(kit) == ["a"]
    [(wfid, step, output, error, fmt)] = checkpoints(kit)
    assert (wfid, step, error, fmt) == ("w1", 1, None, "pickle") and output is not None
    assert [(s.function_id, s.function_name, s.output) for s in DBOS.get_workflow_steps("w1")] == [
        (1, "insert", "a!")
    ]


def test_outside_a_workflow_a_transaction_runs_once_unrecorded(kit: Kit) -> None:
    ds = kit.datasource(ds_name())
    runs: list[Any] = []
    insert = kit.define(ds, "insert", [Hook(runs.append), INSERT, Result(lambda _r, a: a[0])])
    DBOS.launch()
    assert kit.call(insert, "plain") == "plain"
    assert runs == [("plain",)] and items(kit) == ["plain"] and checkpoints(kit) == []


def test_error_is_recorded_and_replayed_without_rerunning(kit: Kit) -> None:
    ds = kit.datasource(ds_name())
    runs: list[Any] = []
    fail = kit.define(
        ds, "fail", [Hook(runs.append), INSERT, Fail(lambda a: ValueError(f"bad {a[0]}"))]
    )
    wf = kit.workflow("wf_fail", fail)
    DBOS.launch()
    for _ in range(2):
        with SetWorkflowID("e1"), pytest.raises(ValueError, match="bad x"):
            kit.call(wf, "x")
    assert runs == [("x",)]
    assert items(kit) == []  # the failed transaction's write was rolled back
    [(wfid, step, output, error, _fmt)] = checkpoints(kit)
    assert (wfid, step, output) == ("e1", 1, None) and error is not None
    # The datasource's checkpoint alone replays it: an execution that may have run the step
    # before (a resumed one) looks the checkpoint up and raises, without running the body.
    with as_step_of("e1", recorded={}), pytest.raises(ValueError, match="bad x"):
        kit.call(fail, "x")
    assert runs == [("x",)]


@pytest.mark.parametrize("result", ["success", "error"])
def test_duplicate_execution_rolls_back_and_returns_the_winners_outcome(
    kit: Kit, result: str
) -> None:
    ds = kit.datasource(ds_name())
    runs: list[Any] = []
    end = (
        Result(lambda _r, a: f"from {a[0]}")
        if result == "success"
        else Fail(lambda a: ValueError(f"from {a[0]}"))
    )
    tx = kit.define(ds, "dup_tx", [Hook(runs.append), INSERT, end])
    wf = kit.workflow("wf_dup", tx)
    DBOS.launch()
    # Another execution of step 1 of workflow "dup" commits its checkpoint first ...
    winner = outcome(lambda: commit_in_the_datasource_only(kit, tx, "dup", "winner"))
    # ... then the workflow's own first execution runs step 1 optimistically, meets the
    # checkpoint key, rolls back and returns (or raises) the winner's outcome, which the
    # system database then records as the step's.
    with SetWorkflowID("dup"):
        loser = outcome(lambda: kit.call(wf, "loser"))
    assert runs == [("winner",), ("loser",)]
    assert loser == winner
    [step] = DBOS.get_workflow_steps("dup")
    recorded = step.output if step.error is None else f"ValueError: {step.error}"
    assert recorded == winner[1]
    if result == "success":
        assert winner == ("value", "from winner") and items(kit) == ["winner"]
    else:
        assert winner == ("error", "ValueError: from winner") and items(kit) == []
    assert len(checkpoints(kit)) == 1


@pytest.mark.parametrize("result", ["success", "error"])
def test_concurrent_duplicate_loses_the_race_and_returns_the_winners_outcome(
    pg_kit: Kit, result: str
) -> None:
    kit = pg_kit
    ds = kit.datasource(ds_name())
    runs: list[Any] = []
    loser_wrote, winner_done = threading.Event(), threading.Event()

    def gate(args: tuple[Any, ...]) -> None:
        if args[0] == "loser" and not loser_wrote.is_set():
            loser_wrote.set()
            assert winner_done.wait(20)

    end = (
        Result(lambda _r, a: f"from {a[0]}")
        if result == "success"
        else Fail(lambda a: ValueError(f"from {a[0]}"))
    )
    tx = kit.define(ds, "dup_tx", [Hook(runs.append), INSERT, Hook(gate), end])
    wf = kit.workflow("wf_dup", tx)
    DBOS.launch()
    got: list[tuple[str, Any]] = []

    def run_loser() -> None:
        with SetWorkflowID("dup"):
            got.append(outcome(lambda: kit.call(wf, "loser")))

    loser = threading.Thread(target=run_loser)
    loser.start()
    assert loser_wrote.wait(20)  # the loser's transaction is open, its row written
    winner = outcome(lambda: commit_in_the_datasource_only(kit, tx, "dup", "winner"))
    winner_done.set()
    loser.join(30)
    assert got == [winner]
    assert ("loser",) in runs and ("winner",) in runs
    assert items(kit) == (["winner"] if result == "success" else [])
    assert len(checkpoints(kit)) == 1


def test_concurrent_serializable_transactions_on_one_row_the_loser_is_retried(kit: Kit) -> None:
    ds = kit.datasource(ds_name())
    barrier = threading.Barrier(2, timeout=20)
    attempts: list[str] = []
    lock = threading.Lock()

    def meet(args: tuple[Any, ...]) -> None:
        with lock:
            attempts.append(args[0])
            first = attempts.count(args[0]) == 1
        if first:  # both transactions have read the row before either writes it
            barrier.wait()

    config = kit.config(
        isolation=PGIsolationLevel.SERIALIZABLE, begin_mode=SQLiteBeginMode.DEFERRED
    )
    bump = kit.define(
        ds,
        "bump",
        [
            Sql("SELECT n FROM {counter} WHERE id = 1"),
            Hook(meet),
            Sql("UPDATE {counter} SET n = n + 1 WHERE id = 1"),
            Result(lambda _r, a: a[0]),
        ],
        config=config,
    )
    wf = kit.workflow("wf_bump", bump)
    DBOS.launch()
    results: list[Any] = []

    def run(tag: str) -> None:
        with SetWorkflowID(f"bump-{tag}"):
            results.append(outcome(lambda: kit.call(wf, tag)))

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [("value", "a"), ("value", "b")]
    assert kit.run_sql("SELECT n FROM {counter} WHERE id = 1") == [(2,)]
    # The loser was retried to success: once on Postgres (its UPDATE waited for the
    # winner's commit, then failed with 40001); on SQLite, once per SQLITE_BUSY it met
    # while the winner held the write lock.
    assert len(attempts) == 3 if kit.is_pg else len(attempts) >= 3


def test_isolation_level_and_read_only_are_applied(pg_kit: Kit) -> None:
    kit = pg_kit
    ds = kit.datasource(ds_name())
    probe = [
        Sql(
            "SELECT current_setting('transaction_isolation'), "
            "current_setting('transaction_read_only')"
        ),
        Result(lambda rows, _a: rows[0][0]),
    ]
    probes = {
        (level, ro): kit.define(
            ds, f"probe_{level.name}_{ro}", probe, config=kit.config(isolation=level, read_only=ro)
        )
        for level in PGIsolationLevel
        for ro in (False, True)
    }
    default = kit.define(ds, "probe_default", probe)
    wf = kit.workflow("wf_probe", probes[(PGIsolationLevel.REPEATABLE_READ, False)])
    DBOS.launch()
    for (level, ro), tx in probes.items():
        assert kit.call(tx) == (level.value.lower(), "on" if ro else "off")
    assert kit.call(default) == ("serializable", "off")
    assert kit.call(wf) == ("repeatable read", "off")


@pytest.fixture
def sqlite_kit(tmp_path: Path) -> Generator[Kit, None, None]:
    yield from make_kit("sqlite", tmp_path)


def test_sqlite_begin_mode_and_read_only_are_applied(sqlite_kit: Kit) -> None:
    kit = sqlite_kit
    ds = kit.datasource(ds_name())

    def write_lock(_args: tuple[Any, ...]) -> None:
        other = sqlite3.connect(kit.sqlite_path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            seen.append("free")
        except sqlite3.OperationalError:
            seen.append("held")
        finally:
            other.close()

    seen: list[str] = []
    probe = [
        Sql("SELECT count(*) FROM {items}"),
        Hook(write_lock),
        Sql("PRAGMA query_only"),
        Result(lambda rows, _a: rows[1][0][0]),
    ]
    modes = {
        mode: kit.define(ds, f"lite_{mode.name}", probe, config=kit.config(begin_mode=mode))
        for mode in SQLiteBeginMode
    }
    read_only = kit.define(ds, "lite_read_only", probe, config=kit.config(read_only=True))
    DBOS.launch()
    for mode, tx in modes.items():
        assert kit.call(tx) == 0, mode
    assert kit.call(read_only) == 1  # PRAGMA query_only is on inside ...
    assert seen == ["free", "held", "held", "free"]  # DEFERRED, IMMEDIATE, EXCLUSIVE, read-only
    assert kit.call(modes[SQLiteBeginMode.DEFERRED]) == 0  # ... and off again afterwards


def test_a_write_in_a_read_only_transaction_is_rejected_by_the_database(kit: Kit) -> None:
    ds = kit.datasource(ds_name())
    runs: list[Any] = []
    read_only = kit.config(read_only=True)
    write = kit.define(ds, "ro_write", [Hook(runs.append), INSERT], config=read_only)
    count = kit.define(
        ds,
        "ro_count",
        [Sql("SELECT count(*) FROM {items}"), Result(lambda r, _a: r[0][0][0])],
        config=read_only,
    )
    wf_write, wf_count = kit.workflow("wf_ro_write", write), kit.workflow("wf_ro_count", count)
    DBOS.launch()
    with pytest.raises(Exception) as caught:
        kit.call(wf_write, "x")
    if kit.is_pg:
        assert get_pg_error_code(caught.value) == "25006"  # read_only_sql_transaction
    else:
        assert isinstance(caught.value, sqlite3.OperationalError)
        assert "readonly" in str(caught.value)
    assert runs == [("x",)]  # rejected, not retried
    assert kit.call(wf_count) == 0
    assert items(kit) == [] and checkpoints(kit) == []  # read-only: no checkpoint at all


def test_client_outside_a_transaction_raises(kit: Kit) -> None:
    ds = kit.datasource(ds_name())
    with pytest.raises(DBOSNotInTransactionError, match=r"outside one of its transactions"):
        _ = ds.client
    DBOS.launch()
    with pytest.raises(DBOSNotInTransactionError):
        _ = ds.client


def test_missing_checkpoint_schema_at_launch_names_the_table_and_the_fix(kit: Kit) -> None:
    ds = kit.datasource(ds_name(), create_checkpoint_schema=False)
    with pytest.raises(DBOSCheckpointSchemaError) as caught:
        DBOS.launch()
    message = str(caught.value)
    assert "install_checkpoint_schema()" in message
    if kit.is_pg:
        assert f'"{kit.schema}".transaction_completion' in message
        assert f"create_transaction_completion_table_pg({kit.schema!r})" in message
    else:
        assert "dbos_transaction_completion" in message
        assert "SQLITE_CHECKPOINT_TABLE_SQL" in message
    ds.install_checkpoint_schema()
    insert = kit.define(ds, "insert_after_install", [INSERT, Result(lambda _r, a: a[0])])
    DBOS.launch()
    assert kit.call(insert, "ok") == "ok"


def test_retry_bound_reached_gives_the_named_error(kit: Kit) -> None:
    runs: list[Any] = []
    if kit.is_pg:
        ds = kit.datasource(ds_name(), retry={"max_attempts": 3, "max_elapsed_s": None})
        actions: list[Any] = [
            Hook(runs.append),
            Sql(
                "DO $$ BEGIN RAISE EXCEPTION 'forced' USING ERRCODE = 'serialization_failure'; "
                "END $$"
            ),
        ]
    else:
        ds = kit.datasource(
            ds_name(), retry={"max_attempts": 3, "max_elapsed_s": None}, busy_timeout_s=0
        )
        actions = [Hook(runs.append), INSERT]
    tx = kit.define(ds, "always_retriable", actions)
    wf = kit.workflow("wf_always_retriable", tx)
    DBOS.launch()
    holder = None
    if not kit.is_pg:  # another connection holds the write lock throughout
        holder = sqlite3.connect(kit.sqlite_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    try:
        with SetWorkflowID("bound"), pytest.raises(DBOSTransactionRetriesExceededError) as caught:
            kit.call(wf, "x")
        assert caught.value.attempts == 3
        assert "retriable" in str(caught.value) and "max_attempts" in str(caught.value)
        assert len(runs) == (3 if kit.is_pg else 0)  # sqlite: BEGIN IMMEDIATE itself is busy
        # The named error is the step's recorded outcome: replayed, not retried again.
        with SetWorkflowID("bound"), pytest.raises(DBOSTransactionRetriesExceededError):
            kit.call(wf, "x")
        assert len(runs) == (3 if kit.is_pg else 0)
    finally:
        if holder is not None:
            holder.close()


def test_lost_connection_is_retried_on_a_new_one(pg_kit: Kit) -> None:
    kit = pg_kit
    ds = kit.datasource(ds_name())
    runs: list[Any] = []
    tx = kit.define(
        ds,
        "lose_connection",
        [
            Hook(runs.append),
            INSERT,
            # The first attempt's server process terminates itself mid-transaction.
            Sql(
                "SELECT pg_terminate_backend(pg_backend_pid()) WHERE ? = 1",
                lambda _a: (len(runs),),
            ),
            Result(lambda _r, a: a[0]),
        ],
    )
    wf = kit.workflow("wf_lose_connection", tx)
    DBOS.launch()
    with SetWorkflowID("lost"):
        assert kit.call(wf, "kept") == "kept"
    assert len(runs) == 2 and items(kit) == ["kept"] and len(checkpoints(kit)) == 1
