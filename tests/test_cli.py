"""The ``dbos-sdk`` command line, run for real against system databases that a launched DBOS
wrote, on SQLite and Postgres: tables, --json, exit codes; resume and fork picked up by a
launched runtime; the examples. (The demo's tests are in test_demo.py.)

Most commands run in this process through ``main(argv)`` (beartype checks the CLI's
types then); the console script, ``python -m dbos_sdk`` and the examples run as real
processes.
"""

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Generator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import ConfigFactory
from dbos_sdk import DBOS, DBOSConfig, DBOSWorkflowCancelledError, SetWorkflowID
from dbos_sdk._cli import DB_URL_ENV, EXIT_DATABASE, EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from dbos_sdk._runtime import current_runtime
from dbos_sdk._sysdb import INTERNAL_QUEUE
from dbos_sdk._sysdb._schema import SCHEMA_VERSION

REPO = Path(__file__).resolve().parent.parent

# --- workflows the tests record (module level: registered once, before any launch) ----

CALLS: list[int] = []


@DBOS.step(name="cli_test.add_one")
def add_one(x: int) -> int:
    CALLS.append(x)
    return x + 1


@DBOS.workflow(name="cli_test.two_steps")
def two_steps(x: int) -> int:
    return add_one(add_one(x))


@DBOS.workflow(name="cli_test.fails")
def fails(x: int) -> int:
    raise ValueError(f"bad input {x}")


@DBOS.workflow(name="cli_test.parent")
def parent(x: int) -> int:
    return two_steps(x) * 10


class Opaque:
    """Pickled by reference to this test module, which another process cannot import."""

    def __repr__(self) -> str:
        return "Opaque()"


@DBOS.workflow(name="cli_test.returns_opaque")
def returns_opaque() -> Opaque:
    return Opaque()


GATE = threading.Event()
FINISHED: list[int] = []


@DBOS.step(name="cli_test.wait_for_gate")
def wait_for_gate() -> None:
    GATE.wait(20)


@DBOS.step(name="cli_test.finish")
def finish() -> str:
    FINISHED.append(1)
    return "finished"


@DBOS.workflow(name="cli_test.gated")
def gated() -> str:
    wait_for_gate()
    return finish()


# --- running the CLI ------------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == EXIT_OK, (self.code, self.err)
        return json.loads(self.out)


def cli(*args: str) -> Result:
    """Run the CLI in this process, as ``dbos-sdk ARGS`` would."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(args))
    return Result(code, out.getvalue(), err.getvalue())


def run_process(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 90
) -> Result:
    """Run a real process with the CLI's database variable unset (unless given)."""
    full = {k: v for k, v in os.environ.items() if k != DB_URL_ENV}
    full.update(env or {})
    proc = subprocess.run(
        argv, cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def cli_process(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Result:
    return run_process([sys.executable, "-m", "dbos_sdk", *args], cwd, env)


@pytest.fixture(autouse=True)
def _no_database_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DB_URL_ENV, raising=False)


@pytest.fixture
def make_config(make_config: ConfigFactory) -> Generator[ConfigFactory, None, None]:
    """The conftest factory, with DBOS shut down before the test's schema is dropped."""
    yield make_config
    DBOS.shutdown(workflow_timeout_s=2)


def db_args(config: DBOSConfig) -> list[str]:
    return ["--db-url", config.resolved_system_database_url, "--schema", config.postgres_schema]


@pytest.fixture
def recorded(make_config: ConfigFactory) -> list[str]:
    """A system database written by a launched DBOS (shut down again): the CLI's options."""
    config = make_config()
    DBOS(config)
    DBOS.launch()
    for wfid, call in (
        ("ok-1", lambda: two_steps(3)),
        ("parent-1", lambda: parent(1)),
        ("opaque-1", returns_opaque),
    ):
        with SetWorkflowID(wfid):
            call()
        time.sleep(0.005)  # distinct creation times: "newest first" is well defined
    with SetWorkflowID("bad-1"), pytest.raises(ValueError):
        fails(7)
    DBOS.shutdown()
    CALLS.clear()
    return db_args(config)


def set_stored_output(config: DBOSConfig, workflow_id: str, text: str) -> None:
    """Overwrite a workflow's stored output, as a foreign or broken writer might."""
    url = config.resolved_system_database_url
    if url.startswith("sqlite:"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute(
                "UPDATE dbos_workflow_status SET output = ? WHERE workflow_uuid = ?",
                (text, workflow_id),
            )
        return
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f'UPDATE "{config.postgres_schema}".workflow_status SET output = %s '
            "WHERE workflow_uuid = %s",
            (text, workflow_id),
        )


# --- reading: list, get, steps ----------------------------------------------------------


def test_list_prints_an_aligned_table_newest_first(recorded: list[str]) -> None:
    r = cli("workflow", "list", *recorded)
    assert r.code == EXIT_OK, r.err
    header, *rows = r.out.splitlines()
    assert header.split()[:3] == ["WORKFLOW", "ID", "STATUS"]
    assert [row.split()[0] for row in rows] == [
        "bad-1",
        "opaque-1",
        "parent-1-1",
        "parent-1",
        "ok-1",
    ]
    status_col = header.index("STATUS")
    result_col = header.index("OUTPUT / ERROR")
    for row in rows:
        assert row[status_col - 2 : status_col] == "  " and row[status_col] != " "
    by_id = {row.split()[0]: row for row in rows}
    assert by_id["ok-1"][status_col:].startswith("SUCCESS")
    assert by_id["ok-1"][result_col:] == "5"
    assert by_id["bad-1"][result_col:] == "ValueError: bad input 7"
    assert "cli_test.two_steps" in by_id["ok-1"]


def test_list_json_gives_records_and_honours_filters(recorded: list[str]) -> None:
    everything = cli("workflow", "list", "--json", *recorded).json()
    assert {w["workflow_id"]: w["status"] for w in everything} == {
        "ok-1": "SUCCESS",
        "parent-1": "SUCCESS",
        "parent-1-1": "SUCCESS",
        "opaque-1": "SUCCESS",
        "bad-1": "ERROR",
    }
    ok = next(w for w in everything if w["workflow_id"] == "ok-1")
    assert ok["output"] == 5 and ok["error"] is None
    assert ok["input"] == {"args": [3], "kwargs": {}}
    assert ok["name"] == "cli_test.two_steps" and ok["serialization"] == "pickle"
    assert isinstance(ok["created_at"], int) and ok["completed_at"] >= ok["created_at"]
    assert next(w for w in everything if w["workflow_id"] == "opaque-1")["output"] == "Opaque()"

    errors = cli("workflow", "list", "--json", "--status", "error", *recorded).json()
    assert [(w["workflow_id"], w["error"]) for w in errors] == [
        ("bad-1", "ValueError: bad input 7")
    ]
    named = cli("workflow", "list", "--json", "--name", "cli_test.two_steps", *recorded).json()
    assert [w["workflow_id"] for w in named] == ["parent-1-1", "ok-1"]
    oldest = cli("workflow", "list", "--json", "--oldest-first", "--limit", "2", *recorded)
    assert [w["workflow_id"] for w in oldest.json()] == ["ok-1", "parent-1"]
    skipped = cli("workflow", "list", "--json", "--oldest-first", "--offset", "3", *recorded)
    assert [w["workflow_id"] for w in skipped.json()] == ["opaque-1", "bad-1"]
    future = cli("workflow", "list", "--json", "--since", "2999-01-01", *recorded).json()
    assert future == []
    assert "No workflows match" in cli("workflow", "list", "--since", "2999-01-01", *recorded).out


def test_get_shows_status_input_output_and_error(recorded: list[str]) -> None:
    r = cli("workflow", "get", "ok-1", *recorded)
    assert r.code == EXIT_OK, r.err
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in r.out.splitlines())
    assert fields["Workflow ID"] == "ok-1"
    assert fields["Status"] == "SUCCESS"
    assert fields["Input"] == "cli_test.two_steps(3)"
    assert fields["Output"] == "5"
    assert "Error" not in fields

    bad = cli("workflow", "get", "bad-1", "--json", *recorded).json()
    assert bad["status"] == "ERROR" and bad["error"] == "ValueError: bad input 7"
    assert bad["output"] is None and bad["input"] == {"args": [7], "kwargs": {}}
    human = cli("workflow", "get", "bad-1", *recorded).out
    assert re.search(r"^Error:\s+ValueError: bad input 7$", human, re.MULTILINE), human

    raw = cli("workflow", "get", "ok-1", "--json", "--no-decode", *recorded).json()
    assert isinstance(raw["output"], str) and raw["output"] != "5"  # the stored base64 text


def test_steps_shows_outputs_and_child_workflows(recorded: list[str]) -> None:
    r = cli("workflow", "steps", "ok-1", *recorded)
    assert r.code == EXIT_OK, r.err
    header, *rows = r.out.splitlines()
    assert header.split()[:3] == ["STEP", "NAME", "OUTCOME"]
    assert [row.split()[:3] for row in rows] == [
        ["1", "cli_test.add_one", "OK"],
        ["2", "cli_test.add_one", "OK"],
    ]
    assert [row.split()[-1] for row in rows] == ["4", "5"]

    steps = cli("workflow", "steps", "parent-1", "--json", *recorded).json()
    assert [(s["function_id"], s["function_name"], s["child_workflow_id"]) for s in steps] == [
        (1, "cli_test.two_steps", "parent-1-1")
    ]
    assert "CHILD" in cli("workflow", "steps", "parent-1", *recorded).out
    assert cli("workflow", "steps", "bad-1", *recorded).out.startswith(
        "Workflow 'bad-1' has no recorded steps"
    )


def test_undecodable_values_show_a_placeholder_instead_of_failing(
    recorded: list[str], make_config: ConfigFactory, tmp_path: Path
) -> None:
    set_stored_output(make_config(), "ok-1", "%%% not base64, not a pickle %%%")
    listed = cli("workflow", "list", *recorded)
    assert listed.code == EXIT_OK, listed.err
    assert "<undecodable pickle value:" in listed.out
    got = cli("workflow", "get", "ok-1", "--json", *recorded).json()
    assert got["output"].startswith("<undecodable pickle value:")

    # In another process the class of opaque-1's output cannot be imported.
    other = cli_process("workflow", "get", "opaque-1", "--json", *recorded, cwd=tmp_path).json()
    assert other["output"].startswith("<undecodable pickle value: ModuleNotFoundError")
    assert other["status"] == "SUCCESS"


# --- exit codes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["get", "no-such-id"],
        ["steps", "no-such-id"],
        ["cancel", "no-such-id"],
        ["resume", "no-such-id"],
        ["fork", "no-such-id", "--step", "1"],
    ],
)
def test_an_unknown_workflow_id_exits_1_naming_it(recorded: list[str], command: list[str]) -> None:
    r = cli("workflow", *command, "--json", *recorded)
    assert r.code == EXIT_FAILED
    assert r.out == ""
    assert "'no-such-id'" in r.err and r.err.startswith("dbos-sdk: error:")


def test_unusable_databases_exit_3_with_the_reason(tmp_path: Path) -> None:
    cases = {
        "mysql://localhost/db": "not a supported database URL",
        "sqlite://relative.sqlite": "is malformed",
        f"sqlite:///{tmp_path}/missing.sqlite": "does not exist",
        "postgresql://postgres@127.0.0.1:1/nothing": "Cannot connect",
    }
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database\n" * 200)
    cases[f"sqlite:///{garbage}"] = "not a database"
    empty = tmp_path / "empty.sqlite"
    with sqlite3.connect(empty) as conn:
        conn.execute("CREATE TABLE something_else (x INTEGER)")
    cases[f"sqlite:///{empty}"] = "has no dbos-sdk schema"
    for url, reason in cases.items():
        r = cli("workflow", "list", "--db-url", url)
        assert (r.code, r.out) == (EXIT_DATABASE, ""), (url, r)
        assert reason in r.err, (url, r.err)
    assert not (tmp_path / "missing.sqlite").exists()  # reading never creates a database
    bad_schema = cli("migrate", "--db-url", f"sqlite:///{empty}", "--schema", "no-dashes")
    assert bad_schema.code == EXIT_DATABASE and "no-dashes" in bad_schema.err


def test_a_malformed_url_in_the_environment_is_named_as_such(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DB_URL_ENV, "mysql://localhost/db")
    r = cli("workflow", "list")
    assert r.code == EXIT_DATABASE and f"${DB_URL_ENV}='mysql://localhost/db'" in r.err


def test_a_postgres_schema_without_tables_exits_3_and_suggests_migrate(
    pg_url: str, pg_schema: str
) -> None:
    r = cli("workflow", "get", "x", "--db-url", pg_url, "--schema", pg_schema)
    assert r.code == EXIT_DATABASE
    assert "has no dbos-sdk schema" in r.err and "dbos-sdk migrate" in r.err
    assert pg_schema in r.err


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["workflow"],
        ["workflow", "get"],
        ["workflow", "fork", "x", "--step", "0"],
        ["workflow", "list", "--status", "DONE"],
        ["workflow", "list", "--limit", "-1"],
        ["workflow", "list", "--since", "yesterday"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    r = cli(*argv)
    assert r.code == EXIT_USAGE
    assert "usage: dbos-sdk" in r.err


def test_help_documents_the_database_choice_and_the_exit_codes() -> None:
    r = cli("--help")
    assert r.code == EXIT_OK
    assert DB_URL_ENV in r.out and "sqlite:///dbos-sdk.sqlite" in r.out
    assert "exit codes:" in r.out
    for code in ("0 ", "1 ", "2 ", "3 "):
        assert f"\n  {code}" in r.out
    assert "exit codes:" in cli("workflow", "fork", "--help").out


# --- migrate ----------------------------------------------------------------------------


def test_migrate_creates_the_schema_and_prints_its_version(make_config: ConfigFactory) -> None:
    args = db_args(make_config())
    assert cli("workflow", "list", *args).code == EXIT_DATABASE  # nothing there yet
    r = cli("migrate", *args)
    assert r.code == EXIT_OK, r.err
    assert f"schema version {SCHEMA_VERSION}" in r.out
    assert cli("migrate", "--json", *args).json()["schema_version"] == SCHEMA_VERSION
    listed = cli("workflow", "list", *args)
    assert listed.code == EXIT_OK and "No workflows match" in listed.out


def test_migrate_refuses_a_schema_newer_than_this_sdk(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sys.sqlite"
    assert cli("migrate", "--db-url", url).code == EXIT_OK
    with sqlite3.connect(tmp_path / "sys.sqlite") as conn:
        conn.execute("UPDATE dbos_schema_version SET version = 999")
    r = cli("migrate", "--db-url", url)
    assert r.code == EXIT_DATABASE and "999" in r.err


# --- database selection -----------------------------------------------------------------


def test_the_database_comes_from_the_flag_else_the_environment_else_the_default(
    recorded: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = recorded[1]
    schema_args = recorded[2:]
    monkeypatch.setenv(DB_URL_ENV, url)
    ids = {w["workflow_id"] for w in cli("workflow", "list", "--json", *schema_args).json()}
    assert "ok-1" in ids
    # Options may come before the command too, as in `dbos-sdk --json workflow list`.
    before = cli("--json", "--schema", recorded[3], "workflow", "list").json()
    assert {w["workflow_id"] for w in before} == ids
    # --db-url wins over the environment.
    empty = f"sqlite:///{tmp_path}/empty.sqlite"
    assert cli("migrate", "--db-url", empty).code == EXIT_OK
    assert cli("workflow", "list", "--json", "--db-url", empty).json() == []
    # Neither: dbos-sdk.sqlite in the current directory (absent here, so exit 3).
    r = cli_process("workflow", "list", cwd=tmp_path)
    assert r.code == EXIT_DATABASE and "sqlite:///dbos-sdk.sqlite" in r.err


# --- changing: cancel, resume, fork, then a launched runtime runs the work ----------------


def test_fork_enqueues_a_copy_that_a_launched_runtime_runs_from_the_given_step(
    recorded: list[str], make_config: ConfigFactory
) -> None:
    r = cli("workflow", "fork", "ok-1", "--step", "2", "--new-id", "fork-1", "--json", *recorded)
    assert r.json() == {
        "workflow_id": "fork-1",
        "forked_from": "ok-1",
        "start_step": 2,
        "status": "ENQUEUED",
        "queue_name": INTERNAL_QUEUE,
    }
    again = cli("workflow", "fork", "ok-1", "--new-id", "fork-1", *recorded)
    assert again.code == EXIT_FAILED and "'fork-1' already exists" in again.err
    stored = cli("workflow", "get", "fork-1", "--json", *recorded).json()
    assert (stored["status"], stored["forked_from"]) == ("ENQUEUED", "ok-1")
    assert [
        s["function_id"] for s in cli("workflow", "steps", "fork-1", "--json", *recorded).json()
    ] == [1]

    DBOS(make_config(queue_poll_interval_s=0.1))
    DBOS.launch()
    assert DBOS.retrieve_workflow("fork-1").get_result(timeout=20) == 5
    assert CALLS.count(4) == 1 and 3 not in CALLS  # step 1 replayed, step 2 ran anew
    after = cli("workflow", "get", "fork-1", "--json", *recorded).json()
    assert after["status"] == "SUCCESS" and after["output"] == 5
    human = cli("workflow", "fork", "ok-1", *recorded)
    assert human.code == EXIT_OK and "ENQUEUED" in human.out


def test_cancel_stops_a_running_workflow_and_resume_lets_the_runtime_finish_it(
    make_config: ConfigFactory,
) -> None:
    GATE.clear()
    FINISHED.clear()
    config = make_config(queue_poll_interval_s=0.1)
    args = db_args(config)
    DBOS(config)
    DBOS.launch()
    with SetWorkflowID("gated-1"):
        handle = DBOS.start_workflow(gated)
    r = cli("workflow", "cancel", "gated-1", *args)
    assert r.code == EXIT_OK, r.err
    assert "CANCELLED" in r.out
    # The runtime notices a cancellation written by another process on its own.
    rt = current_runtime()
    assert rt is not None
    entry = rt.find_entry("gated-1")
    assert entry is None or entry.cancelled.wait(10)
    GATE.set()
    with pytest.raises(DBOSWorkflowCancelledError):
        handle.get_result(timeout=20)
    assert cli("workflow", "get", "gated-1", "--json", *args).json()["status"] == "CANCELLED"
    assert FINISHED == []
    assert cli("workflow", "cancel", "gated-1", *args).code == EXIT_OK  # idempotent

    r = cli("workflow", "resume", "gated-1", "--json", *args)
    assert r.json() == {
        "workflow_id": "gated-1",
        "status": "ENQUEUED",
        "queue_name": INTERNAL_QUEUE,
    }
    assert DBOS.retrieve_workflow("gated-1").get_result(timeout=20) == "finished"
    assert FINISHED == [1]

    done = cli("workflow", "cancel", "gated-1", *args)
    assert done.code == EXIT_FAILED and "already finished with status SUCCESS" in done.err
    again = cli("workflow", "resume", "gated-1", *args)
    assert again.code == EXIT_FAILED and "fork" in again.err


# --- real processes: entry points, the demo, the examples --------------------------------


def test_the_console_script_and_python_dash_m_run_the_cli(
    recorded: list[str], tmp_path: Path
) -> None:
    script = Path(sys.executable).parent / "dbos-sdk"
    for argv in ([str(script)], [sys.executable, "-m", "dbos_sdk"]):
        r = run_process([*argv, "workflow", "list", "--json", *recorded], tmp_path)
        assert len(r.json()) == 5
        missing = run_process([*argv, "workflow", "get", "nope", *recorded], tmp_path)
        assert missing.code == EXIT_FAILED and "'nope'" in missing.err
        assert run_process([*argv, "nonsense"], tmp_path).code == EXIT_USAGE


def test_examples_run_on_sqlite_and_the_cli_inspects_what_they_recorded(tmp_path: Path) -> None:
    hello = [sys.executable, str(REPO / "examples" / "hello_workflow.py")]
    first = run_process(hello, tmp_path)
    assert first.code == EXIT_OK, first.err
    assert "running step make_greeting('world')" in first.out
    assert "hello-1: 'Hello, world!' (SUCCESS, 2 steps recorded)" in first.out
    second = run_process(hello, tmp_path)
    assert second.code == EXIT_OK, second.err
    assert "running step" not in second.out  # the recorded result, no step runs again
    assert "hello-1: 'Hello, world!'" in second.out
    hello_db = ["--db-url", f"sqlite:///{tmp_path}/hello_workflow.sqlite"]
    steps = cli("workflow", "steps", "hello-1", "--json", *hello_db).json()
    assert [s["output"] for s in steps] == ["Hello, world", "Hello, world!"]

    fanout = run_process([sys.executable, str(REPO / "examples" / "queue_fanout.py")], tmp_path)
    assert fanout.code == EXIT_OK, fanout.err
    assert "7 words, 47 letters in all" in fanout.out
    most = re.search(r"at most (\d+) at once", fanout.out)
    assert most and 1 <= int(most.group(1)) <= 3
    fanout_db = ["--db-url", f"sqlite:///{tmp_path}/queue_fanout.sqlite"]
    children = cli("workflow", "list", "--queue", "fanout", "--json", *fanout_db).json()
    assert len(children) == 7 and {c["status"] for c in children} == {"SUCCESS"}
    assert sorted(c["output"] for c in children) == sorted(
        len(w) for w in ["durable", "workflows", "survive", "crashes", "and", "restarts", "intact"]
    )
