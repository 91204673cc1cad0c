"""The datasource plugin API itself: the import contract of the plugin packages, error
classification on real Postgres errors, registration and nesting rules, roles, inline
transactions, lifecycle (what destroy closes), the privilege failure at launch, and the
round trips a transaction step costs."""

import ast
import asyncio
import base64
import os
import pickle
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
import sqlalchemy as sa
from psycopg_pool import ConnectionPool
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from conftest import require_postgres
from dbos_psycopg_datasource import AsyncPsycopgDataSource, PsycopgDataSource
from dbos_sdk import DBOS, DBOSConfig, SetWorkflowID
from dbos_sdk._registry import REGISTRY
from dbos_sdk.datasource import (
    TransactionRetryPolicy,
    get_pg_error_code,
    is_pg_key_conflict_error,
    is_pg_retriable_transaction_error,
    register_transaction,
    run_transaction,
    run_transaction_async,
)
from dbos_sdk.errors import (
    DBOSCheckpointSchemaError,
    DBOSConfigurationError,
    DBOSDatabaseConnectionError,
    DBOSNestedTransactionError,
    DBOSNotAuthorizedError,
    DBOSRegistrationError,
    DBOSSerializationError,
    DBOSTransactionRetriesExceededError,
)
from dbos_sqlalchemy_datasource import (
    AsyncSQLAlchemyDataSource,
    SQLAlchemyDataSource,
    SQLAlchemyTransactionConfig,
)
from dbos_sqlite_datasource import SQLiteDataSource

SRC = Path(__file__).resolve().parent.parent / "src"
PLUGINS = ("dbos_psycopg_datasource", "dbos_sqlalchemy_datasource", "dbos_sqlite_datasource")
PUBLIC = {"dbos_sdk", "dbos_sdk.datasource", "dbos_sdk.errors"}


@pytest.fixture(autouse=True)
def _isolated_registry(tmp_path: Path) -> Generator[None, None, None]:
    """A configured runtime on a fresh SQLite system database; registrations made by the
    test are forgotten afterwards."""
    hooks, functions = list(REGISTRY.datasources), dict(REGISTRY.functions)
    DBOS(DBOSConfig("ds-api", system_database_url=f"sqlite:///{tmp_path}/sys.sqlite"))
    yield
    DBOS.shutdown(workflow_timeout_s=2)
    REGISTRY.datasources[:] = hooks
    REGISTRY.functions.clear()
    REGISTRY.functions.update(functions)


@pytest.fixture
def pg_schema_name() -> Generator[str, None, None]:
    url = require_postgres()
    schema = f"dsa_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".items (v TEXT)')
    yield schema
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def lite(tmp_path: Path, **options: Any) -> SQLiteDataSource:
    return SQLiteDataSource(f"lite-{uuid.uuid4().hex[:6]}", tmp_path / "app.sqlite", **options)


# --- the contract is enough --------------------------------------------------------------


def test_plugins_import_only_public_dbos_sdk_names() -> None:
    checked = 0
    for package in PLUGINS:
        for path in (SRC / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module:
                    modules, names = [node.module], [a.name for a in node.names]
                elif isinstance(node, ast.Import):
                    modules, names = [a.name for a in node.names], []
                else:
                    continue
                for module in modules:
                    if module.split(".")[0] != "dbos_sdk":
                        continue
                    checked += 1
                    where = f"{path.relative_to(SRC)}:{node.lineno}"
                    assert module in PUBLIC, f"{where} imports {module}"
                    assert not any(n.startswith("_") for n in names), f"{where}: {names}"
                    assert "*" not in names, where
    assert checked >= 8


# --- classification of real Postgres errors ----------------------------------------------


def pg_error(url: str, sql: str) -> psycopg.Error:
    with psycopg.connect(url) as conn:
        try:
            conn.execute(sql)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            return exc
    raise AssertionError(f"{sql} did not fail")


def test_get_pg_error_code_follows_the_cause_chain_and_takes_only_real_sqlstates() -> None:
    url = require_postgres()
    raise_as = "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{}'; END $$"
    serialization = pg_error(url, raise_as.format("40001"))
    assert get_pg_error_code(serialization) == "40001"
    try:
        try:
            raise serialization
        except psycopg.Error as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert get_pg_error_code(outer) == "40001"
        assert is_pg_retriable_transaction_error(outer)
    unrelated = RuntimeError("no code")
    unrelated.__context__ = serialization  # implicit context is not a cause
    assert get_pg_error_code(unrelated) is None

    class Fake(Exception):
        def __init__(self, code: object) -> None:
            super().__init__(code)
            self.sqlstate = code

    for bad in ("4000", "400011", "4000a", 40001, None, "40 01"):
        assert get_pg_error_code(Fake(bad)) is None, bad
    assert get_pg_error_code(Fake("40P01")) == "40P01"


def test_retriable_and_key_conflict_classification_on_real_errors(pg_schema_name: str) -> None:
    url = require_postgres()
    raise_as = "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{}'; END $$"
    for code in ("40001", "40P01", "08006", "57P01"):
        assert is_pg_retriable_transaction_error(pg_error(url, raise_as.format(code))), code
    table = f'"{pg_schema_name}".uniq'
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (k INT PRIMARY KEY)")  # type: ignore[arg-type]
        conn.execute(f"INSERT INTO {table} VALUES (1)")  # type: ignore[arg-type]
    conflict = pg_error(url, f"INSERT INTO {table} VALUES (1)")
    assert is_pg_key_conflict_error(conflict) and not is_pg_retriable_transaction_error(conflict)
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with pytest.raises(sa.exc.IntegrityError) as wrapped, engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (1)"))
        assert is_pg_key_conflict_error(wrapped.value)  # through SQLAlchemy's wrapper
    finally:
        engine.dispose()
    read_only = pg_error(url, "SET TRANSACTION READ ONLY; CREATE TABLE nope (k INT)")
    assert get_pg_error_code(read_only) == "25006"
    assert not is_pg_retriable_transaction_error(read_only)
    # A connection lost mid-transaction (the server process ended) is retriable.
    with psycopg.connect(url) as conn:
        with pytest.raises(psycopg.OperationalError) as lost:
            conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        assert is_pg_retriable_transaction_error(lost.value)


# --- registration, nesting, roles ---------------------------------------------------------


def test_registration_mistakes_are_named_errors(tmp_path: Path) -> None:
    ds = lite(tmp_path)
    with pytest.raises(DBOSRegistrationError, match="Two datasources"):
        SQLiteDataSource(ds.name, tmp_path / "other.sqlite")
    with pytest.raises(DBOSRegistrationError, match="No datasource named 'nope'"):
        register_transaction("nope", lambda: 1)

    async def coroutine_function() -> int:
        return 1

    with pytest.raises(DBOSRegistrationError, match="is an async function"):
        ds.register_transaction(coroutine_function)  # type: ignore[deprecated]
    apg = AsyncPsycopgDataSource(f"apg-{uuid.uuid4().hex[:6]}", "postgresql://localhost/x")
    with pytest.raises(DBOSRegistrationError, match="is a plain function"):
        apg.register_transaction(lambda: 1)  # type: ignore[arg-type]
    with pytest.raises(DBOSConfigurationError, match="takes a SQLiteTransactionConfig"):
        ds.transaction(SQLAlchemyTransactionConfig())  # type: ignore[arg-type]
    with pytest.raises(DBOSConfigurationError, match="max_attempts"):
        TransactionRetryPolicy(max_attempts=0)
    with pytest.raises(DBOSConfigurationError, match="not a plain SQL identifier"):
        PsycopgDataSource("bad-schema", "postgresql://localhost/x", schema="a;b")
    REGISTRY.datasources[:] = [h for h in REGISTRY.datasources if h.name != apg.name]
    DBOS.launch()
    with pytest.raises(DBOSRegistrationError, match=r"after DBOS\.launch"):
        ds.register_transaction(lambda: 1, name="late")
    with pytest.raises(DBOSRegistrationError, match=r"after DBOS\.launch"):
        lite(tmp_path)


def test_a_transaction_inside_a_step_or_another_transaction_is_a_named_error(
    tmp_path: Path,
) -> None:
    ds = lite(tmp_path)

    @ds.transaction()
    def inner() -> int:
        return 1

    @ds.transaction()
    def outer() -> int:
        return inner()

    @DBOS.step()
    def step_calling_tx() -> int:
        return inner()

    @DBOS.workflow()
    def wf_step() -> int:
        return step_calling_tx()

    @DBOS.workflow()
    def wf_nested() -> int:
        return outer()

    @ds.transaction()
    def outer_inline() -> int:
        return ds.run_transaction(lambda: 2, name="inline")

    DBOS.launch()
    with pytest.raises(DBOSNestedTransactionError, match="inside a step"):
        wf_step()
    with pytest.raises(DBOSNestedTransactionError, match=r"inside transaction '.*outer'"):
        wf_nested()
    with pytest.raises(DBOSNestedTransactionError, match=r"inside transaction '.*outer_inline'"):
        outer_inline()  # outside a workflow
    assert inner() == 1


def test_required_roles_are_enforced_on_transactions(tmp_path: Path) -> None:
    ds = lite(tmp_path)

    @ds.transaction()
    @DBOS.required_roles(["admin"])
    def below() -> str:
        return "below"

    @DBOS.required_roles(["admin", "ops"])
    @ds.transaction()
    def above() -> str:
        return "above"

    @DBOS.workflow()
    def wf() -> str:
        return below() + above()

    DBOS.launch()
    for tx in (below, above, wf):
        with pytest.raises(DBOSNotAuthorizedError):
            tx()
    assert DBOS.with_authed_context("u", ["admin"], below) == "below"
    assert DBOS.with_authed_context("u", ["ops"], above) == "above"
    with pytest.raises(DBOSNotAuthorizedError):
        DBOS.with_authed_context("u", ["ops"], below)
    with SetWorkflowID("roles-wf"):
        assert DBOS.with_authed_context("u", ["admin"], wf) == "belowabove"


def test_run_transaction_inline_is_a_recorded_step_and_keeps_the_function(
    tmp_path: Path, pg_schema_name: str
) -> None:
    ds = lite(tmp_path)
    apg = AsyncPsycopgDataSource("apg-inline", require_postgres(), schema=pg_schema_name)

    def count() -> int:
        return int(
            ds.client.execute("SELECT count(*) FROM dbos_transaction_completion").fetchone()[0]
        )

    @DBOS.workflow()
    def wf() -> int:
        first = ds.run_transaction(count, name="count")
        return first + run_transaction(count, name="count", ds_name=ds.name)

    async def backend_pid() -> int:
        cur = await apg.client.execute("SELECT pg_backend_pid()")
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    @DBOS.workflow()
    async def awf() -> bool:
        a = await apg.run_transaction(backend_pid, name="pid")
        b = await run_transaction_async(backend_pid, name="pid", ds_name="apg-inline")
        return a > 0 and b > 0

    DBOS.launch()
    with SetWorkflowID("inline"):
        assert wf() == 1  # the second step sees the first one's checkpoint
    assert [s.function_name for s in DBOS.get_workflow_steps("inline")] == ["count", "count"]

    async def main() -> bool:
        with SetWorkflowID("inline-async"):
            return await awf()

    assert asyncio.run(main())
    # The same async workflow, recovered or started in the background, runs on the
    # runtime's event loop: the datasource serves both loops.
    assert DBOS.start_workflow(awf).get_result(timeout=20) is True
    assert len(DBOS.get_workflow_steps("inline-async")) == 2


def test_retry_time_bound_ends_retries_with_the_named_error(tmp_path: Path) -> None:
    ds = lite(
        tmp_path,
        busy_timeout_s=0,
        retry=TransactionRetryPolicy(max_attempts=None, max_elapsed_s=0.2),
    )

    @ds.transaction()
    def write() -> None:
        ds.client.execute("CREATE TABLE IF NOT EXISTS t (k INT)")

    DBOS.launch()
    holder = sqlite3.connect(tmp_path / "app.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DBOSTransactionRetriesExceededError) as caught:
            write()
    finally:
        holder.close()
    # No attempt bound: the time bound ended the retries (with slack for a loaded machine).
    assert caught.value.attempts >= 2 and caught.value.elapsed_s < 2.0
    write()  # the lock is gone: it runs


def test_an_output_that_cannot_be_serialized_rolls_back_and_is_the_steps_error(
    tmp_path: Path,
) -> None:
    ds = lite(tmp_path)

    @ds.transaction()
    def returns_a_lock() -> object:
        ds.client.execute("CREATE TABLE IF NOT EXISTS made (k INT)")
        return threading.Lock()  # pickle cannot carry it

    @DBOS.workflow()
    def wf() -> object:
        return returns_a_lock()

    DBOS.launch()
    with SetWorkflowID("unserializable"), pytest.raises(DBOSSerializationError):
        wf()
    with sqlite3.connect(tmp_path / "app.sqlite") as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'made'").fetchall() == []
        [(error,)] = conn.execute("SELECT error FROM dbos_transaction_completion").fetchall()
    assert error is not None
    [step] = DBOS.get_workflow_steps("unserializable")
    assert isinstance(step.error, DBOSSerializationError)


class OrmBase(DeclarativeBase):
    pass


class OrmItem(OrmBase):
    """A mapped class at module level (so pickle can record it); its schema is mapped to
    the test's own with ``schema_translate_map``."""

    __tablename__ = "orm_items"
    __table_args__: ClassVar[dict[str, str]] = {"schema": "orm_schema"}
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


def test_orm_objects_are_flushed_before_the_checkpoint_records_them(pg_schema_name: str) -> None:
    url = require_postgres()
    translate = {"execution_options": {"schema_translate_map": {"orm_schema": pg_schema_name}}}
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"), **translate)
    OrmBase.metadata.create_all(engine)
    engine.dispose()
    sad = SQLAlchemyDataSource("sa-orm", url, schema=pg_schema_name, engine_kwargs=translate)
    asad = AsyncSQLAlchemyDataSource("asa-orm", url, schema=pg_schema_name, engine_kwargs=translate)

    @sad.transaction()
    def add_item(name: str) -> OrmItem:
        item = OrmItem(name=name)
        sad.client.add(item)
        return item  # no flush by the user: its id comes from the datasource's flush

    @asad.transaction()
    async def add_item_async(name: str) -> OrmItem:
        item = OrmItem(name=name)
        asad.client.add(item)
        return item

    @DBOS.workflow()
    def wf() -> OrmItem:
        return add_item("sync")

    @DBOS.workflow()
    async def awf() -> OrmItem:
        return await add_item_async("async")

    DBOS.launch()
    with SetWorkflowID("orm-sync"):
        made = wf()
    with SetWorkflowID("orm-async"):
        made_async = asyncio.run(awf())
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f'SELECT workflow_id, output FROM "{pg_schema_name}".transaction_completion'  # type: ignore[arg-type]
        ).fetchall()
    recorded = {wfid: pickle.loads(base64.b64decode(out)) for wfid, out in rows}
    for wfid, item in (("orm-sync", made), ("orm-async", made_async)):
        assert isinstance(item.id, int)
        assert (recorded[wfid].id, recorded[wfid].name) == (item.id, item.name)


# --- lifecycle --------------------------------------------------------------------------


def test_destroy_closes_what_the_datasource_opened_not_what_it_was_given(
    tmp_path: Path, pg_schema_name: str
) -> None:
    url = require_postgres()
    given_pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        url, min_size=1, max_size=2, open=True
    )
    given_engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with_pool = PsycopgDataSource("pg-given", given_pool, schema=pg_schema_name)
        own_pool = PsycopgDataSource("pg-own", url, schema=pg_schema_name)
        with_engine = SQLAlchemyDataSource("sa-given", given_engine, schema=pg_schema_name)
        own_engine = SQLAlchemyDataSource("sa-own", url, schema=pg_schema_name)
        sqlite_ds = lite(tmp_path)
        DBOS.launch()
        opened_pool = own_pool._pool  # pyright: ignore[reportPrivateUsage]
        opened_engine = own_engine.engine
        lite_conns = list(sqlite_ds._idle)  # pyright: ignore[reportPrivateUsage]
        assert opened_pool is not None and lite_conns
        assert with_pool.run_transaction(lambda: 1, name="p") == 1
        assert with_engine.run_transaction(lambda: 2, name="e") == 2
        DBOS.shutdown()
        assert opened_pool.closed
        assert opened_engine.pool.checkedin() == 0
        for conn in lite_conns:
            with pytest.raises(sqlite3.ProgrammingError, match="closed"):
                conn.execute("SELECT 1")
        assert not given_pool.closed
        with given_pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with given_engine.connect() as conn2:
            assert conn2.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        given_pool.close()
        given_engine.dispose()


def test_launch_fails_with_a_named_error_when_the_database_is_unreachable(tmp_path: Path) -> None:
    SQLiteDataSource("lite-nowhere", tmp_path / "no-such-dir" / "app.sqlite")
    with pytest.raises(DBOSDatabaseConnectionError, match="cannot open the SQLite file"):
        DBOS.launch()
    REGISTRY.datasources[:] = [h for h in REGISTRY.datasources if h.name != "lite-nowhere"]
    PsycopgDataSource("pg-nowhere", "postgresql://postgres@127.0.0.1:1/x", connect_timeout_s=0.5)
    with pytest.raises(
        DBOSDatabaseConnectionError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:1/x"
    ):
        DBOS.launch()


def test_launch_names_the_table_and_the_fix_when_creating_it_is_not_permitted() -> None:
    url = require_postgres()
    role = f"dsrole_{uuid.uuid4().hex[:8]}"
    schema = f"dsnone_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')  # type: ignore[arg-type]
    try:
        role_url = psycopg.conninfo.make_conninfo(url, user=role)
        ds = PsycopgDataSource("pg-unprivileged", role_url, schema=schema)
        with pytest.raises(DBOSCheckpointSchemaError) as caught:
            DBOS.launch()
        message = str(caught.value)
        assert f'"{schema}".transaction_completion' in message
        assert "creating it failed" in message and "permission denied" in message
        assert "install_checkpoint_schema()" in message
        assert f"create_transaction_completion_table_pg({schema!r})" in message
        assert ds.name in message
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')  # type: ignore[arg-type]


# --- round trips ------------------------------------------------------------------------


def count_round_trips(trace: Path, start: int) -> int:
    """Client messages that wait for the server: a simple Query, or a Sync."""
    text = trace.read_text()[start:]
    sent = [line.split("\t")[3] for line in text.splitlines() if "\tF\t" in line]
    return sum(1 for kind in sent if kind in ("Query", "Sync"))


def test_a_transaction_step_costs_two_round_trips_beyond_its_own_statements(
    pg_schema_name: str,
) -> None:
    url = require_postgres()
    fd, name = tempfile.mkstemp(prefix="libpq_trace_")
    trace = Path(name)
    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
        url, min_size=1, max_size=1, configure=lambda c: c.pgconn.trace(fd), open=True
    )
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"), pool_size=1)
    sa.event.listen(engine, "connect", lambda dbapi, _rec: dbapi.pgconn.trace(fd))
    pg = PsycopgDataSource("pg-rt", pool, schema=pg_schema_name)
    sad = SQLAlchemyDataSource("sa-rt", engine, schema=pg_schema_name)
    insert = f'INSERT INTO "{pg_schema_name}".items (v) VALUES (%s)'

    @pg.transaction()
    def pg_insert(v: str) -> str:
        pg.client.execute(insert, (v,))  # type: ignore[arg-type]
        return v

    @sad.transaction()
    def sa_insert(v: str) -> str:
        sad.client.execute(sa.text(insert.replace("%s", ":v")), {"v": v})
        return v

    @DBOS.workflow()
    def wf(v: str) -> str:
        return pg_insert(v) + sa_insert(v)

    try:
        DBOS.launch()
        wf("warm-up")
        start = len(trace.read_text())
        with SetWorkflowID("rt"):
            assert wf("x") == "xx"
        # Two transactions of one user statement each: BEGIN, the INSERT, INSERT+COMMIT.
        assert count_round_trips(trace, start) == 2 * (1 + 2)
    finally:
        DBOS.shutdown()
        pool.close()
        engine.dispose()
        os.close(fd)
        trace.unlink()
