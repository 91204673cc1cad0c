"""SIGKILL between the datasource commit and the system-database record of the step, for
each datasource: recovery returns the same outcome, the body ran once, the row exists once.

The child (children/ds_crash.py) kills itself with SIGKILL from inside the system
database's ``record_step`` for the transaction's step, a precise kill point in a real
process: the datasource transaction, with its completion checkpoint, is committed; the
step is not recorded. A second child recovers the workflow at launch.
"""

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from children.ds_kits import KINDS, Kit
from conftest import require_postgres

TESTS_DIR = Path(__file__).resolve().parent


@pytest.fixture(params=KINDS)
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Generator[Kit, None, None]:
    kind = str(request.param)
    pg_url = schema = None
    if kind != "sqlite":
        pg_url = require_postgres()
        schema = f"dsc_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    kit = Kit(kind, pg_url, schema, str(tmp_path / "app.sqlite"))
    kit.run_sql("CREATE TABLE {items} (v TEXT)")
    yield kit
    if schema is not None:
        assert pg_url is not None
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def run_child(args: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "children.ds_crash", json.dumps(args)],
        cwd=TESTS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("mode", ["success", "error"])
def test_sigkill_after_the_datasource_commit_recovery_replays_the_checkpoint(
    kit: Kit, mode: str, tmp_path: Path
) -> None:
    marker = tmp_path / "runs.txt"
    args: dict[str, Any] = {
        "kind": kit.kind,
        "pg_url": kit.pg_url,
        "schema": kit.schema,
        "sqlite_path": kit.sqlite_path,
        "sysdb": f"sqlite:///{tmp_path}/sys.sqlite",
        "marker": str(marker),
        "mode": mode,
        "wfid": "crash-wf",
        "token": "tok",
    }
    crashed = run_child({**args, "phase": "crash"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    assert marker.read_text() == "tok\n"
    committed = kit.run_sql("SELECT v FROM {items}")
    assert committed == ([("tok",)] if mode == "success" else [])

    recovered = run_child({**args, "phase": "recover"})
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    outcome = json.loads(recovered.stdout.strip().splitlines()[-1])
    if mode == "success":
        assert outcome == {"value": "done tok"}
    else:
        assert outcome == {"error": "ValueError: failed tok"}
    assert marker.read_text() == "tok\n"  # the body did not run again
    assert kit.run_sql("SELECT v FROM {items}") == committed  # the row exists once
    table = "{transaction_completion}" if kit.is_pg else "{dbos_transaction_completion}"
    assert kit.run_sql(f"SELECT workflow_id, function_num FROM {table}") == [("crash-wf", 1)]
