"""Datasource behaviour beyond the conformance suite.

The method of operation itself -- exactly once across a SIGKILL between the datasource
commit and the step record, duplicate executions, error replay, the retry bound, conflicts,
lost connections, read-only, isolation and begin modes, outside a workflow, lifecycle, the
checkpoint-table check -- is proved once for all five datasources by
test_datasource_conformance.py (dbos_sdk.testing.DataSourceConformance over the kits in
children/ds_kits.py). What is here is particular to this repository's datasources.
"""

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest

from dbos_psycopg_datasource import (
    AsyncPsycopgDataSource,
    PsycopgDataSource,
    PsycopgTransactionConfig,
)
from dbos_sdk import DBOS, DBOSConfig, SetWorkflowID
from dbos_sdk._runtime import current_runtime
from dbos_sdk._sysdb import StepRow
from dbos_sdk.datasource import TransactionRetryPolicy
from dbos_sdk.errors import DBOSNotInTransactionError, DBOSTransactionRetriesExceededError
from dbos_sqlalchemy_datasource import AsyncSQLAlchemyDataSource, SQLAlchemyDataSource
from dbos_sqlite_datasource import SQLiteDataSource

NOWHERE = "postgresql://postgres@127.0.0.1:1/never-connected"


def test_client_outside_a_transaction_says_where_to_read_it(tmp_path: Path) -> None:
    made: list[Any] = [
        PsycopgDataSource("c-pg", NOWHERE),
        AsyncPsycopgDataSource("c-apg", NOWHERE),
        SQLAlchemyDataSource("c-sa", NOWHERE),
        AsyncSQLAlchemyDataSource("c-asa", NOWHERE),
        SQLiteDataSource("c-lite", tmp_path / "app.sqlite"),
    ]
    for ds in made:
        with pytest.raises(
            DBOSNotInTransactionError, match=r"outside one of its transactions"
        ) as e:
            _ = ds.client
        assert f"{type(ds).__name__}({ds.name!r})" in str(e.value)
        assert "@ds.transaction()" in str(e.value)


def test_sqlite_a_busy_begin_is_retried_up_to_the_bound_without_running_the_body(
    tmp_path: Path,
) -> None:
    """The conformance suite's retry-bound check fails inside the body; here the write lock
    is held by another connection throughout, so BEGIN IMMEDIATE itself is busy each time."""
    path = tmp_path / "app.sqlite"
    DBOS(DBOSConfig("ds-busy", system_database_url=f"sqlite:///{tmp_path}/sys.sqlite"))
    ds = SQLiteDataSource(
        f"lite-{uuid.uuid4().hex[:6]}",
        path,
        busy_timeout_s=0,
        retry=TransactionRetryPolicy(max_attempts=3, max_elapsed_s=None),
    )
    runs: list[str] = []

    @ds.transaction(name="always_busy")
    def write(v: str) -> None:
        runs.append(v)
        ds.client.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")

    @DBOS.workflow()
    def wf(v: str) -> None:
        write(v)

    DBOS.launch()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with SetWorkflowID("bound"), pytest.raises(DBOSTransactionRetriesExceededError) as caught:
            wf("x")
        assert caught.value.attempts == 3
        assert "retriable" in str(caught.value) and "max_attempts" in str(caught.value)
        assert runs == []  # BEGIN IMMEDIATE was busy on every attempt
        # The named error is the step's recorded outcome: replayed, not retried again.
        with SetWorkflowID("bound"), pytest.raises(DBOSTransactionRetriesExceededError):
            wf("x")
        assert runs == []
    finally:
        holder.close()


def _column(url: str, table: str, column: str, where: str, order: str, key: str) -> list[Any]:
    """``column`` of ``table``'s rows whose ``where`` column is ``key``, ordered by
    ``order``: read past this process's runtime."""
    query = f"SELECT {column} FROM {table} WHERE {where} = %s ORDER BY {order}"
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(query, (key,)).fetchall()]  # type: ignore[arg-type]


def _recorded_names(url: str, schema: str, workflow_id: str) -> list[str]:
    """The step names in the system database's table."""
    table = f'"{schema}".operation_outputs'
    return _column(url, table, "function_name", "workflow_uuid", "function_id", workflow_id)


def test_a_transaction_step_record_rides_with_the_workflows_next_write(
    pg_url: str, pg_schema: str
) -> None:
    """On Postgres, the record of a transaction whose outcome the datasource committed (its
    checkpoint) is held back and written in the same statement as the workflow's next
    write; every other step is written at once. This process's reads include held records.
    (A held record lost in a crash is the SIGKILL-before-the-step-record case of the
    conformance suite: replay finds the checkpoint.) The flusher, which writes records
    held longer than ``hold_s``, is kept out of the way here; the next test has it."""
    DBOS(DBOSConfig("held-records", system_database_url=pg_url, postgres_schema=pg_schema))
    ds = PsycopgDataSource(
        f"held-{uuid.uuid4().hex[:6]}",
        pg_url,
        schema=pg_schema,
        retry=TransactionRetryPolicy(max_attempts=2, max_elapsed_s=None),
    )

    @ds.transaction(name="writes")
    def writes() -> int:
        return int(ds.client.execute("SELECT 7").fetchone()[0])  # type: ignore[index]

    @ds.transaction(PsycopgTransactionConfig(read_only=True), name="reads")
    def reads() -> int:
        return 8

    @ds.transaction(name="fails")
    def fails() -> None:
        raise ValueError("recorded in the datasource")

    @ds.transaction(name="keeps_conflicting")
    def keeps_conflicting() -> None:
        raise psycopg.errors.SerializationFailure("retried, then given up")

    @DBOS.step(name="plain")
    def plain() -> int:
        return 9

    seen_inside: dict[str, list[str]] = {}

    @DBOS.workflow()
    def wf() -> None:
        wfid = DBOS.workflow_id
        assert wfid is not None
        writes()
        seen_inside["table"] = _recorded_names(pg_url, pg_schema, wfid)
        seen_inside["api"] = [s.function_name for s in DBOS.get_workflow_steps(wfid)]
        reads()
        with pytest.raises(ValueError):
            fails()
        with pytest.raises(DBOSTransactionRetriesExceededError):
            keeps_conflicting()
        plain()
        writes()

    DBOS.launch()
    rt = current_runtime()
    assert rt is not None
    record = rt.sysdb.record_step
    flags: list[tuple[str, bool]] = []

    def spy(workflow_id: str, step: Any, *, recorded_elsewhere: bool = False) -> Any:
        flags.append((step.function_name, recorded_elsewhere))
        return record(workflow_id, step, recorded_elsewhere=recorded_elsewhere)

    rt.sysdb.record_step = spy  # type: ignore[method-assign]
    rt.sysdb.held_steps.hold_s = 60.0
    with SetWorkflowID("held-wf"):
        wf()
    assert flags == [
        ("writes", True),
        ("reads", False),  # read-only: no checkpoint in the datasource
        ("fails", True),  # the error is the step's checkpoint
        ("keeps_conflicting", False),  # the retry bound's error is recorded nowhere else
        ("plain", False),
        ("writes", True),
    ]
    # Held: not in the table yet, but this process's reads show it.
    assert seen_inside == {"table": [], "api": ["writes"]}
    names = [name for name, _ in flags]
    assert _recorded_names(pg_url, pg_schema, "held-wf") == names
    assert [s.function_name for s in DBOS.get_workflow_steps("held-wf")] == names
    sysdb: Any = rt.sysdb
    with sysdb._lazy_cursor() as ex:
        assert ex("SHOW synchronous_commit").fetchone()[0] == "off"
    with sysdb._cursor() as ex:
        assert ex("SHOW synchronous_commit").fetchone()[0] == "on"


def test_a_held_step_record_is_written_soon_when_the_workflow_writes_nothing_more(
    pg_url: str, pg_schema: str
) -> None:
    """Other processes see a transaction's step within ~hold_s (10 ms), even while its
    workflow blocks without another write."""
    DBOS(DBOSConfig("held-flush", system_database_url=pg_url, postgres_schema=pg_schema))
    ds = PsycopgDataSource(f"flush-{uuid.uuid4().hex[:6]}", pg_url, schema=pg_schema)
    release = threading.Event()

    @ds.transaction(name="writes")
    def writes() -> int:
        return 7

    @DBOS.workflow()
    def wf() -> int:
        value = writes()
        assert release.wait(30)
        return value

    DBOS.launch()
    with SetWorkflowID("held-flushed"):
        handle = DBOS.start_workflow(wf)
    try:
        deadline = time.monotonic() + 10
        while _recorded_names(pg_url, pg_schema, "held-flushed") != ["writes"]:
            assert time.monotonic() < deadline, "the flusher did not write the held record"
            time.sleep(0.01)
    finally:
        release.set()
    assert handle.get_result() == 7
    assert _recorded_names(pg_url, pg_schema, "held-flushed") == ["writes"]


def test_held_step_records_are_written_by_cancel_fork_and_shutdown(
    pg_url: str, pg_schema: str
) -> None:
    """Whatever changes a workflow writes its held step records first (so it is never
    durable without them), and shutdown writes the rest."""
    DBOS(DBOSConfig("held-writes", system_database_url=pg_url, postgres_schema=pg_schema))

    @DBOS.workflow()
    def wf() -> int:
        return 1

    DBOS.launch()
    rt = current_runtime()
    assert rt is not None
    rt.sysdb.held_steps.hold_s = 60.0  # only the writes under test write them
    with SetWorkflowID("held-host"):
        wf()

    def hold(step_id: int) -> None:
        row = StepRow(step_id, f"held_{step_id}", None, None, None, "pickle", 1, 2)
        assert rt is not None
        assert rt.sysdb.record_step("held-host", row, recorded_elsewhere=True) is None

    hold(10)
    assert _recorded_names(pg_url, pg_schema, "held-host") == []
    assert [s.function_name for s in DBOS.get_workflow_steps("held-host")] == ["held_10"]
    DBOS.cancel_workflow("held-host")  # a no-op on a finished workflow, but a write
    assert _recorded_names(pg_url, pg_schema, "held-host") == ["held_10"]
    hold(20)
    DBOS.fork_workflow("held-host", 30, new_workflow_id="held-fork").get_result()
    assert _recorded_names(pg_url, pg_schema, "held-host") == ["held_10", "held_20"]
    assert _recorded_names(pg_url, pg_schema, "held-fork")[:2] == ["held_10", "held_20"]
    hold(40)
    DBOS.shutdown()
    assert _recorded_names(pg_url, pg_schema, "held-host") == ["held_10", "held_20", "held_40"]


SHOW_SETTINGS = (
    "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')"
)


def _odd_config() -> Any:
    from dbos_sdk.datasource import PGIsolationLevel
    from dbos_sqlalchemy_datasource import SQLAlchemyTransactionConfig

    return SQLAlchemyTransactionConfig(
        isolation_level=PGIsolationLevel.REPEATABLE_READ, read_only=True
    )


def _on_one_connection(cls: Any, pg_url: str, pg_schema: str) -> Any:
    """A configured runtime and a SQLAlchemy datasource of ``cls`` whose engine has one
    connection: what one transaction leaves on it, the next user of the engine gets."""
    DBOS(DBOSConfig("sa-reset", system_database_url=pg_url, postgres_schema=pg_schema))
    name = f"sa-reset-{uuid.uuid4().hex[:6]}"
    return cls(name, pg_url, schema=pg_schema, pool_size=1, engine_kwargs={"max_overflow": 0})


def _checkpointed_steps(url: str, schema: str, workflow_id: str) -> list[int]:
    """The steps with a completion checkpoint in the datasource's table."""
    table = f'"{schema}".transaction_completion'
    return _column(url, table, "function_num", "workflow_id", "function_num", workflow_id)


def test_sqlalchemy_settings_do_not_stay_on_the_engines_connections(
    pg_url: str, pg_schema: str
) -> None:
    """SQLAlchemyDataSource configures a connection when its transaction begins (on the
    function's first statement, or at commit when it ran none) and puts it back before the
    pool gets it: code using ``ds.engine`` directly sees the server's defaults."""
    import sqlalchemy as sa

    ds = _on_one_connection(SQLAlchemyDataSource, pg_url, pg_schema)
    show = sa.text(SHOW_SETTINGS)

    @ds.transaction(_odd_config(), name="reads_settings")
    def reads_settings() -> tuple[str, str]:
        row = ds.client.execute(show).one()
        return (str(row[0]), str(row[1]))

    @ds.transaction(name="runs_nothing")
    def runs_nothing() -> int:
        return 5

    @DBOS.workflow()
    def wf() -> tuple[tuple[str, str], int]:
        return (reads_settings(), runs_nothing())

    DBOS.launch()
    with SetWorkflowID("sa-reset-wf"):
        assert wf() == (("repeatable read", "on"), 5)
    with ds.engine.connect() as conn:
        row = conn.execute(show).one()
    assert (str(row[0]), str(row[1])) == ("read committed", "off")
    # The transaction that ran no statement still committed its checkpoint; step 1 was
    # read-only, so it has none.
    assert _checkpointed_steps(pg_url, pg_schema, "sa-reset-wf") == [2]


def test_async_sqlalchemy_settings_do_not_stay_on_the_engines_connections(
    pg_url: str, pg_schema: str
) -> None:
    """AsyncSQLAlchemyDataSource configures a connection when its transaction begins (on
    the function's first statement, or at commit when it ran none) and puts it back before
    the pool gets it: code using ``ds.engine`` directly sees the server's defaults."""
    import asyncio

    import sqlalchemy as sa

    ds = _on_one_connection(AsyncSQLAlchemyDataSource, pg_url, pg_schema)
    show = sa.text(SHOW_SETTINGS)

    @ds.transaction(_odd_config(), name="reads_settings")
    async def reads_settings() -> tuple[str, str]:
        row = (await ds.client.execute(show)).one()
        return (str(row[0]), str(row[1]))

    @ds.transaction(name="runs_nothing")
    async def runs_nothing() -> int:
        return 5

    @DBOS.workflow()
    async def wf() -> tuple[tuple[str, str], int]:
        return (await reads_settings(), await runs_nothing())

    async def engine_sees() -> tuple[str, str]:
        async with ds.engine.connect() as conn:
            row = (await conn.execute(show)).one()
            return (str(row[0]), str(row[1]))

    DBOS.launch()
    with SetWorkflowID("sa-reset-wf"):
        got = asyncio.run(wf())
    assert got == (("repeatable read", "on"), 5)
    assert asyncio.run(engine_sees()) == ("read committed", "off")
    assert _checkpointed_steps(pg_url, pg_schema, "sa-reset-wf") == [2]


def test_sqlalchemy_engine_not_on_psycopg_is_a_configuration_error_at_launch(
    tmp_path: Path,
) -> None:
    import sqlalchemy as sa

    from dbos_sdk.errors import DBOSConfigurationError

    DBOS(DBOSConfig("sa-driver", system_database_url=f"sqlite:///{tmp_path}/sys.sqlite"))
    engine = sa.create_engine(f"sqlite:///{tmp_path}/app.sqlite")
    SQLAlchemyDataSource("sa-driver", engine)
    with pytest.raises(DBOSConfigurationError, match=r"SQLAlchemyDataSource\('sa-driver'\) needs"):
        DBOS.launch()
    engine.dispose()


@pytest.mark.parametrize("cls", [SQLAlchemyDataSource, AsyncSQLAlchemyDataSource])
def test_sqlalchemy_engine_before_launch_and_an_unreachable_server_are_named_errors(
    cls: Any, tmp_path: Path
) -> None:
    from dbos_sdk.errors import DBOSDatabaseConnectionError, DBOSNotLaunchedError

    DBOS(DBOSConfig("sa-nowhere", system_database_url=f"sqlite:///{tmp_path}/sys.sqlite"))
    ds = cls("sa-nowhere", "postgresql://someone:secret@127.0.0.1:1/never-connected")
    with pytest.raises(DBOSNotLaunchedError, match=r"is not open: its transactions run between"):
        _ = ds.engine
    with pytest.raises(DBOSDatabaseConnectionError) as caught:
        DBOS.launch()
    message = str(caught.value)
    assert f"{cls.__name__}('sa-nowhere') cannot connect to" in message
    assert "127.0.0.1:1/never-connected" in message and "secret" not in message
    with pytest.raises(DBOSNotLaunchedError):  # the engine it created is gone again
        _ = ds.engine
