"""dbos_pgnotify_receive against the real Postgres server.

Everything that launches DBOS with a receiver runs in a child process
(tests/children/pgn_app.py): the crash tests need a process to SIGKILL, and a child keeps
each scenario's LISTEN connections and threads out of the test process. Each test gets its own
schema for the watched table (and one for the DBOS system database), dropped afterwards.
"""

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest

from dbos_pgnotify_receive import PgChangeReceiver
from dbos_sdk import DBOSConfigurationError

CHILD = Path(__file__).resolve().parent / "children" / "pgn_app.py"
RECEIVER = "pgn-test"
WORKFLOW = "pgn_app.on_change"

pytestmark = pytest.mark.postgres


class Child:
    """A running pgn_app.py; its stdout lines arrive on a queue."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(settings)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, prefix: str, timeout: float = 20) -> str:
        """The next line starting with ``prefix`` (failing on exit or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.fail(f"no {prefix!r} line within {timeout}s")
            if line is None:
                self.fail(f"exited before printing {prefix!r}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def wait_started(self, workflow_id: str, times: int = 1) -> None:
        """Read lines until ``workflow_id`` was started ``times`` times in all."""
        while self.started().count(workflow_id) < times:
            self.expect("STARTED ")

    def finish(self, timeout: float = 30) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.fail(f"did not exit within {timeout}s")
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    def summary(self) -> list[dict[str, Any]]:
        line = self.expect("SUMMARY ")
        assert self.finish() == 0, self.stderr()
        assert "Traceback" not in (err := self.stderr()), err  # nothing failed on the way
        workflows: list[dict[str, Any]] = json.loads(line.removeprefix("SUMMARY "))["workflows"]
        return workflows

    def started(self) -> list[str]:
        return [line.split(" ", 1)[1] for line in self.lines if line.startswith("STARTED ")]

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else "(running)"

    def fail(self, why: str) -> NoReturn:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        pytest.fail(f"child {why}; stdout: {self.lines}\nstderr:\n{self.stderr()}")


@pytest.fixture
def db(pg_url: str) -> Generator[psycopg.Connection[Any], None, None]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def app_schema(db: psycopg.Connection[Any]) -> Generator[str, None, None]:
    """A fresh schema for the watched table, dropped afterwards."""
    schema = f"pgn_{uuid.uuid4().hex[:12]}"
    db.execute(f'CREATE SCHEMA "{schema}"')
    yield schema
    db.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def orders(db: psycopg.Connection[Any], app_schema: str) -> str:
    """``<schema>.orders``, versioned by a bigint column."""
    db.execute(
        f'CREATE TABLE "{app_schema}".orders '
        "(id int PRIMARY KEY, note text NOT NULL, version bigint NOT NULL)"
    )
    return f"{app_schema}.orders"


def wfid(table: str, key: object, version: str) -> str:
    return f"pgchange:{RECEIVER}:{WORKFLOW}:{table}:{key}@{version}"


def settings(pg_url: str, pg_schema: str, table: str, **more: Any) -> dict[str, Any]:
    return {"url": pg_url, "sysdb": pg_url, "sys_schema": pg_schema, "table": table, **more}


def ids(workflows: list[dict[str, Any]]) -> list[str]:
    assert all(w["status"] == "SUCCESS" for w in workflows), workflows
    return sorted(w["id"] for w in workflows)


@pytest.mark.parametrize("mode", ["notify", "both"])
def test_each_changed_record_version_starts_exactly_one_workflow(
    pg_url: str, pg_schema: str, db: psycopg.Connection[Any], orders: str, mode: str
) -> None:
    child = Child(
        settings(pg_url, pg_schema, orders, mode=mode, install_trigger=True, expect=3, settle=1)
    )
    child.expect("READY")
    with db.transaction():
        db.execute(f"INSERT INTO {orders} VALUES (1, 'a', 1), (2, 'b', 2)")
    child.wait_started(wfid(orders, 1, "1"))
    child.wait_started(wfid(orders, 2, "2"))
    db.execute(f"UPDATE {orders} SET version = 3 WHERE id = 1")  # a new version
    child.wait_started(wfid(orders, 1, "3"))
    db.execute(f"UPDATE {orders} SET note = 'b2' WHERE id = 2")  # seen again, same version
    child.wait_started(wfid(orders, 2, "2"), times=2)
    workflows = child.summary()
    assert ids(workflows) == sorted(
        [wfid(orders, 1, "1"), wfid(orders, 2, "2"), wfid(orders, 1, "3")]
    )
    by_id = {w["id"]: w["output"] for w in workflows}
    assert by_id[wfid(orders, 1, "3")] == ["1", "3"]


def test_versions_overwritten_before_they_are_read_start_one_workflow_for_the_latest(
    pg_url: str, pg_schema: str, db: psycopg.Connection[Any], orders: str
) -> None:
    """The receiver reads records, not a change log: a version replaced before the
    receiver read the record is coalesced into the newer one."""
    child = Child(
        settings(pg_url, pg_schema, orders, mode="notify", install_trigger=True, expect=1)
    )
    child.expect("READY")
    with db.transaction():
        db.execute(f"INSERT INTO {orders} VALUES (1, 'a', 1)")
        db.execute(f"UPDATE {orders} SET version = 2 WHERE id = 1")
    assert ids(child.summary()) == [wfid(orders, 1, "2")]


def test_rows_changed_while_no_process_runs_are_dispatched_once_at_next_launch(
    pg_url: str, pg_schema: str, db: psycopg.Connection[Any], app_schema: str
) -> None:
    table = f"{app_schema}.events"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, updated_at timestamptz NOT NULL)")

    def at(second: int) -> str:
        return f"2024-05-01T12:00:{second:02d}+00:00"

    db.execute(f"INSERT INTO {table} VALUES (1, %s), (2, %s)", (at(1), at(2)))
    polling = settings(pg_url, pg_schema, table, mode="poll", version_column="updated_at")
    first = Child({**polling, "expect": 2, "settle": 0.3})
    assert ids(first.summary()) == sorted([wfid(table, 1, at(1)), wfid(table, 2, at(2))])

    # Downtime: new records, and a new version of record 1.
    db.execute(f"INSERT INTO {table} VALUES (3, %s), (4, %s)", (at(3), at(4)))
    db.execute(f"UPDATE {table} SET updated_at = %s WHERE id = 1", (at(5),))

    second = Child({**polling, "expect": 5, "settle": 0.6})
    caught_up = [wfid(table, 3, at(3)), wfid(table, 4, at(4)), wfid(table, 1, at(5))]
    assert ids(second.summary()) == sorted(
        [wfid(table, 1, at(1)), wfid(table, 2, at(2)), *caught_up]
    )
    started = set(second.started())
    # Resumed from the dispatch state: everything after it (record 2 shares the stored
    # version, so it may be offered again; its ID makes that a no-op), nothing before.
    assert set(caught_up) <= started <= {*caught_up, wfid(table, 2, at(2))}


def test_sigkill_between_workflow_start_and_state_update_redelivers_without_a_second_workflow(
    pg_url: str, pg_schema: str, db: psycopg.Connection[Any], orders: str
) -> None:
    base = settings(pg_url, pg_schema, orders, mode="notify", install_trigger=True)
    doomed = Child({**base, "kill_on_state_advance": True})
    doomed.expect("READY")
    db.execute(f"INSERT INTO {orders} VALUES (1, 'a', 10)")
    assert doomed.expect("STARTED ") == f"STARTED {wfid(orders, 1, '10')}"
    doomed.expect("KILLING before advancing")
    assert doomed.finish() == -signal.SIGKILL

    db.execute(f"INSERT INTO {orders} VALUES (2, 'b', 11)")  # while nothing runs

    second = Child({**base, "expect": 2})
    assert ids(second.summary()) == sorted([wfid(orders, 1, "10"), wfid(orders, 2, "11")])
    assert wfid(orders, 1, "10") in second.started()  # redelivered, and started nothing new

    third = Child({**base, "expect": 2})
    assert ids(third.summary()) == sorted([wfid(orders, 1, "10"), wfid(orders, 2, "11")])
    assert wfid(orders, 1, "10") not in third.started()  # the state did advance past it


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown_table", ["table='{schema}.nope'", "does not exist"]),
        (
            "unreachable",
            ["url='postgresql://postgres@127.0.0.1:1/test'", "cannot use the database"],
        ),
        ("missing_trigger", ["install_trigger=True", "CREATE TRIGGER", "mode='notify'"]),
        ("text_version", ["version_column='note'", "integer"]),
        ("unknown_key", ["key_columns names ['nope']"]),
    ],
)
def test_bad_configuration_fails_launch_naming_receiver_function_and_setting(
    pg_url: str, orders: str, tmp_path: Path, case: str, expected: list[str]
) -> None:
    schema = orders.split(".")[0]
    cfg: dict[str, Any] = {
        "url": pg_url,
        "sysdb": f"sqlite:///{tmp_path}/sys.sqlite",
        "table": orders,
        "mode": "poll",
    }
    if case == "unknown_table":
        cfg["table"] = f"{schema}.nope"
    elif case == "unreachable":
        cfg["receiver_url"] = "postgresql://postgres@127.0.0.1:1/test"
    elif case == "missing_trigger":
        cfg["mode"] = "notify"
    elif case == "text_version":
        cfg["version_column"] = "note"
    else:
        cfg["key_columns"] = ["nope"]
    child = Child(cfg)
    line = child.expect("LAUNCH_ERROR ")
    assert child.finish() == 3
    error = json.loads(line.removeprefix("LAUNCH_ERROR "))
    assert error["type"] == "DBOSLaunchError"
    message: str = error["message"]
    assert f"PgChangeReceiver {RECEIVER!r}" in message
    assert "on_change" in message  # the function
    for part in expected:
        assert part.format(schema=schema) in message


def test_invalid_settings_are_rejected_when_decorating(pg_url: str) -> None:
    recv = PgChangeReceiver("bad-settings", pg_url)

    def handler(record: dict[str, Any]) -> None: ...

    cases: list[tuple[dict[str, Any], str]] = [
        ({"table": "no spaces allowed"}, "table='no spaces allowed' is not a table name"),
        ({"table": "a.b.c"}, "is not a table name"),
        ({"key_columns": []}, "key_columns is empty"),
        ({"key_columns": ["id", "id"]}, "names 'id' twice"),
        ({"key_columns": ["id; drop"]}, "not a plain column name"),
        ({"version_column": "id"}, "version_column='id' is also a key column"),
        ({"poll_interval": 0}, "poll_interval=0 must be a positive"),
        ({"mode": "poll", "install_trigger": True}, "install_trigger=True has no use"),
    ]
    for change, message in cases:
        kwargs: dict[str, Any] = {
            "table": "orders",
            "key_columns": ["id"],
            "version_column": "version",
            **change,
        }
        with pytest.raises(DBOSConfigurationError) as info:
            recv.on_change(**kwargs)(handler)
        assert message in str(info.value)
        assert "'bad-settings'" in str(info.value) and "handler" in str(info.value)
    with pytest.raises(DBOSConfigurationError, match="url='mysql://x' is not a Postgres URL"):
        PgChangeReceiver("bad-url", "mysql://x")
    with pytest.raises(DBOSConfigurationError, match="batch_size=0"):
        PgChangeReceiver("bad-batch", pg_url, batch_size=0)


def test_install_trigger_sql_is_printable_and_install_trigger_makes_inserts_notify(
    pg_url: str, db: psycopg.Connection[Any], orders: str
) -> None:
    recv = PgChangeReceiver("trigger-test", pg_url)
    text = recv.install_trigger_sql(table=orders, key_columns=["id"])
    assert "CREATE TRIGGER" in text and "AFTER INSERT OR UPDATE" in text
    found = re.search(r"pg_notify\('(dbos_pgn_[0-9a-f]+)'", text)
    assert found is not None
    channel = found.group(1)
    recv.install_trigger(table=orders, key_columns=["id"])
    recv.install_trigger(table=orders, key_columns=["id"])  # again: replaces, no error
    db.execute(f'LISTEN "{channel}"')
    db.execute(f"INSERT INTO {orders} VALUES (7, 'x', 1)")
    db.execute(f"UPDATE {orders} SET note = 'y' WHERE id = 7")
    notes = list(db.notifies(timeout=2, stop_after=2))
    assert [json.loads(n.payload) for n in notes] == [{"k": ["7"]}, {"k": ["7"]}]
