"""The MariaDB datasource (dbos_mariadb_datasource) against the real MariaDB server.

The guarantees every datasource owes -- exactly once across a SIGKILL between the
datasource commit and the step record, duplicate executions, error replay, the retry
bound, conflicting transactions retried, read-only, settings, outside a workflow,
lifecycle, the missing checkpoint table -- are proved by the SDK's conformance suite
(``TestMariaDBConformance`` at the end, driven by ``children.maria_kit.MariaDBKit``), as a
third party would prove them. The tests before it prove what is MariaDB's own: the error
numbers retried (a real deadlock 1213, a lock wait timeout 1205, a killed connection),
what each isolation level does, implicit commits caught, privileges, the pool.

The server is DBOS_TEST_MARIADB_URL (default mariadb://root@127.0.0.1:3306/test). When it
does not answer, every test here is skipped with a loud warning -- or fails, if CI is set.
"""

import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from children.maria_kit import MARIA_URL, MariaEnv, check_server, execute, server_kwargs
from dbos_mariadb_datasource import (
    MariaDBDataSource,
    MariaDBIsolationLevel,
    MariaDBPoolTimeoutError,
    MariaDBTransactionConfig,
    create_transaction_completion_database_mariadb,
    create_transaction_completion_table_mariadb,
    get_mariadb_error_code,
    is_mariadb_retriable_error,
)
from dbos_sdk import DBOS, DBOSConfig, SetWorkflowID
from dbos_sdk.errors import (
    DBOSCheckpointSchemaError,
    DBOSConfigurationError,
    DBOSDatabaseConnectionError,
    DBOSDataSourceError,
    DBOSTransactionRetriesExceededError,
)
from dbos_sdk.testing import DataSourceConformance, isolated_registry

_MARIA_ERROR = check_server()
if _MARIA_ERROR is not None:
    _BANNER = "!" * 78
    _MESSAGE = (
        f"\n{_BANNER}\nMARIADB IS NOT REACHABLE at {MARIA_URL}: {_MARIA_ERROR}\n"
        "Every MariaDB test will be SKIPPED"
        + (" -- and, because CI is set, FAIL." if os.environ.get("CI") else ".")
        + f"\n{_BANNER}\n"
    )
    print(_MESSAGE, file=sys.stderr)
    warnings.warn(pytest.PytestWarning(_MESSAGE), stacklevel=1)


def require_mariadb() -> None:
    if _MARIA_ERROR is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and MariaDB is not reachable at {MARIA_URL}: {_MARIA_ERROR}")
        pytest.skip(f"MariaDB is not reachable at {MARIA_URL}: {_MARIA_ERROR}")


@pytest.fixture
def env(tmp_path: Path) -> Generator[MariaEnv, None, None]:
    """Fresh application and checkpoint databases, and a configured (unlaunched) runtime
    on a SQLite system database; everything is dropped afterwards."""
    require_mariadb()
    env = MariaEnv.create()
    DBOS(DBOSConfig("maria-test", system_database_url=f"sqlite:///{tmp_path}/sys.sqlite"))
    try:
        yield env
    finally:
        DBOS.shutdown(workflow_timeout_s=2)
        env.drop()


def ds_name() -> str:
    return f"maria-{uuid.uuid4().hex[:8]}"


class RecordingDataSource(MariaDBDataSource):
    """A MariaDB datasource that notes every error it is asked to classify (through the
    public ``is_retriable_error`` hook), so a test sees what was retried."""

    errors: list[BaseException]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.errors = []
        super().__init__(*args, **kwargs)

    def is_retriable_error(self, error: BaseException) -> bool:
        if not any(e is error for e in self.errors):  # asked more than once per error
            self.errors.append(error)
        return super().is_retriable_error(error)

    @property
    def seen(self) -> list[int | None]:
        """The error numbers of the errors met, in order."""
        return [get_mariadb_error_code(e) for e in self.errors]


def recording(env: MariaEnv, **options: Any) -> RecordingDataSource:
    retry = options.pop("retry", None)
    return RecordingDataSource(ds_name(), env.url, database=env.ck_db, retry=retry, **options)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("value", fn())
    except Exception as exc:
        return ("error", f"{type(exc).__name__}: {exc}")


def insert_item(ds: MariaDBDataSource, value: str) -> None:
    execute(ds.client, "INSERT INTO items (v) VALUES (%s)", (value,))


# --- retries -----------------------------------------------------------------------------


def test_a_real_deadlock_1213_is_retried_and_both_transactions_commit(env: MariaEnv) -> None:
    ds = recording(env)
    barrier = threading.Barrier(2, timeout=20)
    attempts: list[str] = []
    lock = threading.Lock()

    # SERIALIZABLE (the default) turns the SELECT into a shared-lock read: both
    # transactions hold S on the row, then both ask for X to update it -- a deadlock that
    # InnoDB breaks at once by rolling one back with 1213.
    @ds.transaction(name="bump")
    def bump(tag: str) -> str:
        execute(ds.client, "SELECT n FROM counter WHERE id = 1")
        with lock:
            attempts.append(tag)
            first = attempts.count(tag) == 1
        if first:
            barrier.wait()
        execute(ds.client, "UPDATE counter SET n = n + 1 WHERE id = 1")
        return tag

    @DBOS.workflow(name="wf_bump")
    def wf(tag: str) -> str:
        return bump(tag)

    DBOS.launch()
    results: list[tuple[str, Any]] = []

    def run(tag: str) -> None:
        with SetWorkflowID(f"bump-{tag}"):
            results.append(outcome(lambda: wf(tag)))

    threads = [threading.Thread(target=run, args=(tag,)) for tag in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [("value", "a"), ("value", "b")]
    assert env.run_sql("SELECT n FROM counter WHERE id = 1") == [(2,)]
    assert ds.seen == [1213] and len(attempts) == 3  # the victim ran twice, the winner once
    assert sorted(r[0] for r in env.checkpoints()) == ["bump-a", "bump-b"]


def test_a_lock_wait_timeout_1205_is_retried(env: MariaEnv) -> None:
    ds = recording(env)
    holder = env.connect()
    execute(holder, "START TRANSACTION")
    execute(holder, "SELECT n FROM counter WHERE id = 1 FOR UPDATE")  # holds the row lock
    runs: list[int] = []

    @ds.transaction(name="wait")
    def wait() -> int:
        runs.append(len(runs) + 1)
        if len(runs) == 2:
            holder.rollback()  # the retry finds the lock released
        execute(
            ds.client,
            "SET STATEMENT innodb_lock_wait_timeout = 1 FOR "
            "UPDATE counter SET n = n + 10 WHERE id = 1",
        )
        return len(runs)

    @DBOS.workflow(name="wf_wait")
    def wf() -> int:
        return wait()

    DBOS.launch()
    try:
        with SetWorkflowID("lock-wait"):
            assert wf() == 2
    finally:
        holder.close()
    assert ds.seen == [1205] and runs == [1, 2]
    assert env.run_sql("SELECT n FROM counter WHERE id = 1") == [(10,)]


def test_a_lost_connection_is_retried_on_a_new_one(env: MariaEnv) -> None:
    ds = recording(env)
    runs: list[int] = []
    killer = env.connect()

    @ds.transaction(name="lose_connection")
    def lose() -> str:
        runs.append(execute(ds.client, "SELECT CONNECTION_ID()")[0][0])
        insert_item(ds, "kept")
        if len(runs) == 1:  # the server drops the first attempt's connection
            execute(killer, f"KILL CONNECTION {runs[0]}")
        execute(ds.client, "SELECT 1")
        return "kept"

    @DBOS.workflow(name="wf_lose")
    def wf() -> str:
        return lose()

    DBOS.launch()
    try:
        with SetWorkflowID("lost"):
            assert wf() == "kept"
    finally:
        killer.close()
    assert len(ds.seen) == 1 and ds.seen[0] in (2006, 2013)
    assert len(runs) == 2 and runs[0] != runs[1]  # retried on another connection
    assert env.items() == ["kept"] and len(env.checkpoints()) == 1


def test_error_classification() -> None:
    def err(code: int) -> pymysql.err.OperationalError:
        return pymysql.err.OperationalError(code, "x")

    for code in (1213, 1205, 1020, 1053, 1927, 2002, 2003, 2006, 2013, 2055):
        assert is_mariadb_retriable_error(err(code)), code
    for code in (1062, 1146, 1792, 1045, 1064):
        assert not is_mariadb_retriable_error(err(code)), code
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = err(1213)
    assert is_mariadb_retriable_error(wrapped) and get_mariadb_error_code(wrapped) == 1213
    assert get_mariadb_error_code(ValueError("no code")) is None


# --- configuration applied by the server --------------------------------------------------


def test_each_isolation_level_behaves_as_its_name_says(env: MariaEnv) -> None:
    """What the transaction sees of another connection's update to a row it has read:
    uncommitted (dirty), then committed -- or whether its read locked the row. (That each
    level is set per transaction and read back with @@tx_isolation, on whichever pooled
    connection, is the conformance suite's settings check, through MariaDBKit.)"""
    ds = env.datasource(ds_name())
    other = env.connect()

    def meddle(step: str) -> str | None:
        if step == "update":
            execute(other, "START TRANSACTION")
            try:
                execute(other, "SELECT n FROM counter WHERE id = 1 FOR UPDATE NOWAIT")
            except pymysql.err.OperationalError:
                other.rollback()
                return "locked"
            execute(other, "UPDATE counter SET n = n + 1 WHERE id = 1")
        else:
            other.commit()
        return None

    def probe() -> tuple[Any, ...]:
        read = "SELECT n FROM counter WHERE id = 1"
        first = execute(ds.client, read)[0][0]
        if meddle("update") == "locked":
            return ("locked",)
        dirty = execute(ds.client, read)[0][0]
        meddle("commit")
        committed = execute(ds.client, read)[0][0]
        return (dirty - first, committed - first)

    txs = {
        level: ds.register_transaction(
            probe,
            name=f"behave_{level.name}",
            config=MariaDBTransactionConfig(isolation_level=level),
        )
        for level in MariaDBIsolationLevel
    }
    DBOS.launch()
    try:
        seen = {level: tx() for level, tx in txs.items()}
    finally:
        other.close()
    assert seen == {
        MariaDBIsolationLevel.READ_UNCOMMITTED: (1, 1),  # sees the uncommitted update
        MariaDBIsolationLevel.READ_COMMITTED: (0, 1),  # sees it once committed
        MariaDBIsolationLevel.REPEATABLE_READ: (0, 0),  # keeps its snapshot
        MariaDBIsolationLevel.SERIALIZABLE: ("locked",),  # its plain read share-locked the row
    }


def test_another_datasources_config_is_rejected_at_run_time(env: MariaEnv) -> None:
    from dbos_sqlite_datasource import SQLiteTransactionConfig

    ds = env.datasource(ds_name())
    with pytest.raises(DBOSConfigurationError, match="takes a MariaDBTransactionConfig"):
        ds.transaction(SQLiteTransactionConfig())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def test_ddl_inside_a_transaction_is_a_named_error_not_a_split_checkpoint(env: MariaEnv) -> None:
    ds = env.datasource(ds_name())

    @ds.transaction(name="ddl")
    def ddl() -> None:
        insert_item(ds, "before-ddl")
        execute(ds.client, "CREATE TABLE other (x INT)")  # MariaDB commits implicitly here

    @DBOS.workflow(name="wf_ddl")
    def wf() -> None:
        ddl()

    DBOS.launch()
    with SetWorkflowID("ddl"), pytest.raises(DBOSDataSourceError, match="commits implicitly"):
        wf()
    # The step's outcome is that error, checkpointed on its own; no success was recorded.
    [(wfid, _step, output, error, _fmt)] = env.checkpoints()
    assert (wfid, output) == ("ddl", None) and error is not None


def test_a_deadlock_the_function_swallowed_is_a_named_error_not_a_checkpoint(
    env: MariaEnv,
) -> None:
    """InnoDB rolls the whole transaction back on a deadlock; a function that catches the
    1213 and returns must not get a success checkpoint for writes that were undone."""
    env.run_sql("INSERT INTO counter VALUES (2, 0)")
    ds = env.datasource(ds_name())
    other = env.connect()

    @ds.transaction(name="swallow")
    def swallow() -> str:
        execute(ds.client, "UPDATE counter SET n = n + 1 WHERE id = 1")  # X lock on row 1
        execute(other, "START TRANSACTION")
        # The other transaction writes more rows, so InnoDB makes this one the victim.
        for i in range(20):
            execute(other, "INSERT INTO items (v) VALUES (%s)", (f"other-{i}",))
        execute(other, "UPDATE counter SET n = n + 1 WHERE id = 2")  # X lock on row 2
        waiter = threading.Thread(
            target=execute, args=(other, "UPDATE counter SET n = n + 1 WHERE id = 1")
        )
        waiter.start()
        time.sleep(0.2)  # the other transaction now waits for row 1
        try:
            execute(ds.client, "UPDATE counter SET n = n + 1 WHERE id = 2")  # closes the cycle
        except pymysql.err.OperationalError as exc:
            assert get_mariadb_error_code(exc) == 1213
        waiter.join(10)
        other.rollback()
        return "looks fine"

    @DBOS.workflow(name="wf_swallow")
    def wf() -> str:
        return swallow()

    DBOS.launch()
    try:
        with SetWorkflowID("swallow"), pytest.raises(DBOSDataSourceError, match="rolled it back"):
            wf()
    finally:
        other.close()
    assert env.run_sql("SELECT id, n FROM counter ORDER BY id") == [(1, 0), (2, 0)]
    [(wfid, _step, output, error, _fmt)] = env.checkpoints()  # the error, not "looks fine"
    assert (wfid, output) == ("swallow", None) and error is not None


def test_too_long_a_workflow_id_is_a_named_error(env: MariaEnv) -> None:
    ds = env.datasource(ds_name())

    @ds.transaction(name="short")
    def short() -> int:
        return 1

    @DBOS.workflow(name="wf_long_id")
    def wf() -> int:
        return short()

    DBOS.launch()
    with SetWorkflowID("w" * 3000), pytest.raises(DBOSConfigurationError, match="2048 bytes"):
        wf()
    assert env.checkpoints() == []


# --- the checkpoint schema ----------------------------------------------------------------


def test_missing_schema_that_the_user_may_not_create_fails_launch_with_the_fix(
    env: MariaEnv,
) -> None:
    user = f"dbos_{uuid.uuid4().hex[:8]}"
    env.run_sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
    try:
        env.run_sql(f"GRANT SELECT, INSERT ON `{env.app_db}`.* TO '{user}'@'%'")
        kw = server_kwargs()
        ds = MariaDBDataSource(
            ds_name(),
            {**kw, "user": user, "password": "pw", "database": env.app_db},
            database=env.ck_db,
        )
        # No rights on the checkpoint database: the server will not even say it is missing.
        with pytest.raises(DBOSCheckpointSchemaError, match=r"reading it failed: .*denied"):
            DBOS.launch()
        # Rights to use it, not to create it.
        env.run_sql(f"GRANT SELECT, INSERT ON `{env.ck_db}`.* TO '{user}'@'%'")
        with pytest.raises(DBOSCheckpointSchemaError) as caught:
            DBOS.launch()
        message = str(caught.value)
        assert "it is missing and creating it failed" in message and "denied" in message
        assert f"create_transaction_completion_database_mariadb({env.ck_db!r})" in message
        # The DDL the message points to, run by a user who may, fixes it.
        env.run_sql(create_transaction_completion_database_mariadb(env.ck_db))
        env.run_sql(create_transaction_completion_table_mariadb(env.ck_db))

        @ds.transaction()
        def insert(v: str) -> str:
            insert_item(ds, v)
            return v

        @DBOS.workflow(name="wf_limited")
        def wf(v: str) -> str:
            return insert(v)

        DBOS.launch()
        with SetWorkflowID("limited"):
            assert wf("ok") == "ok"
        assert len(env.checkpoints()) == 1
    finally:
        DBOS.shutdown(workflow_timeout_s=2)
        env.run_sql(f"DROP USER IF EXISTS '{user}'@'%'")


def test_unreachable_server_or_bad_url_is_a_named_error(env: MariaEnv) -> None:
    with pytest.raises(DBOSConfigurationError, match="not a MariaDB URL"):
        MariaDBDataSource(ds_name(), "postgresql://localhost/x")
    with pytest.raises(DBOSConfigurationError, match="unknown URL option 'sslmode'"):
        MariaDBDataSource(ds_name(), "mariadb://localhost/x?sslmode=require")
    with pytest.raises(DBOSConfigurationError, match=r"\['autocommit'\]"):
        MariaDBDataSource(ds_name(), {"host": "localhost", "autocommit": False})
    kw = server_kwargs()
    for target in (
        {**kw, "password": "wrong-password", "user": "nobody"},  # refused by the server
        {**kw, "port": 1, "connect_timeout": 2},  # no server there
    ):
        with isolated_registry():
            MariaDBDataSource(ds_name(), target)
            with pytest.raises(DBOSDatabaseConnectionError, match=r"cannot connect to MariaDB"):
                DBOS.launch()


# --- connections ----------------------------------------------------------------------------


def _connection_ids(env: MariaEnv, ids: set[int]) -> set[int]:
    """Which of ``ids`` are still connected to the server."""
    rows = env.run_sql("SELECT id FROM information_schema.processlist")
    return ids & {int(r[0]) for r in rows}


def test_the_pool_bounds_connections_and_destroy_closes_only_its_own(env: MariaEnv) -> None:
    ds = env.datasource(ds_name(), pool_size=2)
    ids: set[int] = set()
    lock = threading.Lock()
    concurrent = [0, 0]  # now, most

    @ds.transaction(name="hold")
    def hold(i: int) -> int:
        with lock:
            ids.add(int(execute(ds.client, "SELECT CONNECTION_ID()")[0][0]))
            concurrent[0] += 1
            concurrent[1] = max(concurrent)
        time.sleep(0.05)
        with lock:
            concurrent[0] -= 1
        return i

    DBOS.launch()
    mine = env.connect()  # a connection the datasource did not open
    try:
        threads = [threading.Thread(target=hold, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert concurrent[1] <= 2 and 1 <= len(ids) <= 2  # one transaction per connection
        assert _connection_ids(env, ids) == ids  # kept idle for reuse
        DBOS.shutdown()
        assert _connection_ids(env, ids) == set()  # closed at shutdown ...
        assert execute(mine, "SELECT 1") == [(1,)]  # ... and nothing else was
    finally:
        mine.close()


def test_a_pool_that_stays_busy_is_retried_within_the_bound(env: MariaEnv) -> None:
    ds = env.datasource(
        ds_name(),
        pool_size=1,
        pool_timeout_s=0.05,
        retry={"max_attempts": 3, "max_elapsed_s": None},
    )
    release = threading.Event()
    started = threading.Event()

    @ds.transaction(name="occupy")
    def occupy() -> None:
        started.set()
        assert release.wait(20)

    @ds.transaction(name="starved")
    def starved() -> int:
        return 1

    DBOS.launch()
    holder = threading.Thread(target=occupy)
    holder.start()
    try:
        assert started.wait(20)
        with pytest.raises(DBOSTransactionRetriesExceededError) as caught:
            starved()
        assert isinstance(caught.value.__cause__, MariaDBPoolTimeoutError)
    finally:
        release.set()
        holder.join(20)
    assert starved() == 1  # free again


# --- the SDK's conformance suite ---------------------------------------------------------


class TestMariaDBConformance(DataSourceConformance):
    """Every check of dbos_sdk.testing's datasource conformance suite, on MariaDB."""

    kit_factory = "children.maria_kit:MariaDBKit"
