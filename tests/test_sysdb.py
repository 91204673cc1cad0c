"""The system database's life cycle: schema and version at launch, the errors a bad
configuration or database gives (named, actionable, and leaving nothing behind), and
launch/shutdown repeated in one process. On SQLite files and the real Postgres server."""

import sqlite3
import threading
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import ConfigFactory
from dbos_sdk import (
    DBOS,
    DBOSConfig,
    DBOSConfigurationError,
    DBOSDatabaseConnectionError,
    DBOSNotLaunchedError,
    DBOSSchemaVersionError,
    DBOSSerializationError,
    Queue,
    SetWorkflowID,
)
from dbos_sdk._sysdb import open_system_database
from dbos_sdk._sysdb._schema import SCHEMA_VERSION


@pytest.fixture
def make_config(make_config: ConfigFactory) -> Generator[ConfigFactory, None, None]:
    """The conftest factory, with DBOS shut down before the test's schema is dropped."""
    yield make_config
    DBOS.shutdown(workflow_timeout_s=2)


@pytest.fixture
def other_config(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Generator[DBOSConfig, None, None]:
    """A configuration for a second, fresh system database on the test's backend."""
    if backend == "sqlite":
        yield DBOSConfig("other-app", system_database_url=f"sqlite:///{tmp_path}/other.sqlite")
        return
    url = request.getfixturevalue("pg_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield DBOSConfig("other-app", system_database_url=url, postgres_schema=schema)
    DBOS.shutdown(workflow_timeout_s=2)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run_sql(config: DBOSConfig, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the system database directly; ``{t}`` prefixes table names."""
    url = config.resolved_system_database_url
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url[len("sqlite:///") :]) as conn:
            return conn.execute(sql.format(t="dbos_"), params).fetchall()
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.format(t=f'"{config.postgres_schema}".'), params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def set_schema_version(config: DBOSConfig, version: int) -> None:
    run_sql(config, f"UPDATE {{t}}schema_version SET version = {int(version)}")


def dbos_threads() -> list[str]:
    names = ("dbos-queues", "dbos-watcher", "dbos-event-loop")
    return [t.name for t in threading.enumerate() if t.name in names]


@pytest.mark.timeout(60)
def test_launch_creates_the_schema_once_with_a_version_table(make_config: ConfigFactory) -> None:
    config = make_config()
    for _ in range(2):  # a second launch on a migrated database changes nothing
        DBOS(config)
        DBOS.launch()
        DBOS.shutdown()
        assert run_sql(config, "SELECT version FROM {t}schema_version") == [(SCHEMA_VERSION,)]
    for table in ("workflow_status", "operation_outputs", "event_dispatch_kv"):
        assert run_sql(config, f"SELECT COUNT(*) FROM {{t}}{table}") == [(0,)]


@pytest.mark.timeout(60)
def test_a_database_newer_than_the_code_fails_launch_with_schema_version_error(
    make_config: ConfigFactory,
) -> None:
    config = make_config()
    DBOS(config)
    DBOS.launch()
    DBOS.shutdown()
    set_schema_version(config, SCHEMA_VERSION + 1)

    DBOS(config)
    with pytest.raises(DBOSSchemaVersionError) as info:
        DBOS.launch()
    message = str(info.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert f"({SCHEMA_VERSION})" in message and "Upgrade dbos-sdk" in message
    assert config.resolved_system_database_url.split("://")[1] in message
    # No crash and nothing left running or rewritten: the process carries on.
    assert dbos_threads() == []
    with pytest.raises(DBOSNotLaunchedError):
        DBOS.list_workflows()
    assert run_sql(config, "SELECT version FROM {t}schema_version") == [(SCHEMA_VERSION + 1,)]
    set_schema_version(config, SCHEMA_VERSION)
    DBOS.launch()  # the same runtime launches once the database is usable
    assert DBOS.list_workflows() == []


@pytest.mark.postgres
@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["postgres"])
def test_processes_migrating_one_fresh_postgres_schema_at_once_agree(
    make_config: ConfigFactory,
) -> None:
    config = make_config()
    start = threading.Barrier(4)
    versions: list[int] = []
    errors: list[BaseException] = []

    def migrate() -> None:
        sysdb = open_system_database(config)  # one connection pool each, like processes
        try:
            start.wait()
            versions.append(sysdb.migrate())
        except BaseException as exc:
            errors.append(exc)
        finally:
            sysdb.close()

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and versions == [SCHEMA_VERSION] * 4
    assert run_sql(config, "SELECT version FROM {t}schema_version") == [(SCHEMA_VERSION,)]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "url",
    [
        "mysql://user:hunter2@db.example.com/app",
        "sqlite:/relative.sqlite",
        "sqlite://",
        "sqlite:///",
        "postgresql://user:hunter2@/app",
        "not a url",
    ],
)
def test_a_malformed_system_database_url_is_a_configuration_error_naming_the_setting(
    url: str,
) -> None:
    with pytest.raises(DBOSConfigurationError, match="system_database_url") as info:
        DBOS(DBOSConfig("bad-url", system_database_url=url))
        DBOS.launch()
    assert "hunter2" not in str(info.value)
    assert dbos_threads() == []


@pytest.mark.postgres
@pytest.mark.timeout(30)
def test_an_unreachable_postgres_is_a_connection_error_naming_the_redacted_url(
    pg_url: str,
) -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:1/test"
    DBOS(DBOSConfig("unreachable", system_database_url=url))
    with pytest.raises(DBOSDatabaseConnectionError) as info:
        DBOS.launch()
    message = str(info.value)
    assert "postgresql://postgres:***@127.0.0.1:1/test" in message
    assert "hunter2" not in message
    assert dbos_threads() == []


@pytest.mark.timeout(30)
def test_an_unopenable_sqlite_file_is_a_connection_error_naming_the_url(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    url = f"sqlite:///{blocker}/sys.sqlite"
    DBOS(DBOSConfig("unopenable", system_database_url=url))
    with pytest.raises(DBOSDatabaseConnectionError, match=str(blocker)):
        DBOS.launch()
    assert dbos_threads() == []


@pytest.mark.timeout(60)
def test_a_start_with_an_unserializable_argument_writes_nothing_and_frees_the_id(
    make_config: ConfigFactory,
) -> None:
    q = Queue("sysdb_unserializable")
    runs: list[object] = []

    @DBOS.workflow()
    def takes_value(x: object) -> str:
        runs.append(x)
        return "ran"

    @DBOS.workflow()
    def starts_a_child_with_a_lock() -> str:
        try:
            takes_value(threading.Lock())
        except DBOSSerializationError:
            return "child refused"
        return "child ran"

    config = make_config()
    DBOS(config)
    DBOS.launch()
    for start in (
        lambda: takes_value(threading.Lock()),
        lambda: DBOS.start_workflow(takes_value, threading.Lock()),
        lambda: q.enqueue(takes_value, threading.Lock()),
    ):
        with SetWorkflowID("same-id"), pytest.raises(DBOSSerializationError, match="takes_value"):
            start()
    assert DBOS.list_workflows() == []
    assert run_sql(config, "SELECT COUNT(*) FROM {t}operation_outputs") == [(0,)]
    with SetWorkflowID("same-id"):  # the failed starts left no claim on the ID
        assert DBOS.start_workflow(takes_value, 1).get_result(timeout=10) == "ran"
    with SetWorkflowID("parent"):
        assert starts_a_child_with_a_lock() == "child refused"
    assert runs == [1]
    assert {s.workflow_id for s in DBOS.list_workflows()} == {"same-id", "parent"}
    assert DBOS.get_workflow_steps("parent") == []


@pytest.mark.timeout(60)
def test_launch_twice_shutdown_twice_relaunch_and_launch_a_fresh_config_in_one_process(
    make_config: ConfigFactory, other_config: DBOSConfig
) -> None:
    @DBOS.workflow()
    def echo(x: int) -> int:
        return x

    DBOS(make_config())
    DBOS.launch()
    DBOS.launch()  # a no-op
    with SetWorkflowID("first"):
        assert echo(1) == 1
    with pytest.raises(DBOSConfigurationError, match="already launched"):
        DBOS(other_config)
    DBOS.shutdown()
    DBOS.shutdown()  # a no-op
    assert dbos_threads() == []
    with pytest.raises(DBOSNotLaunchedError):
        echo(2)

    DBOS.launch()  # the same configuration again: the same database
    assert DBOS.retrieve_workflow("first").get_result(timeout=10) == 1
    DBOS.shutdown()

    DBOS(other_config)  # a fresh configuration: another, empty database
    DBOS.launch()
    assert DBOS.list_workflows() == []
    with SetWorkflowID("first"):
        assert echo(3) == 3  # a new workflow there, not the recorded one
    DBOS.shutdown()
    assert dbos_threads() == []
