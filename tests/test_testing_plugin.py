"""The pytest plugin (entry point ``dbos_sdk`` -> ``pytest_dbos_sdk``) and the datasource
conformance suite as a plugin author meets them.

The plugin is loaded before any conftest.py, so it must not import dbos_sdk: beartype's
import hook, turned on in our conftest.py, would then miss the package. These tests prove
it does not, that beartype still checks dbos_sdk in this very run, that a run which does
not use the suite sees nothing of the plugin, that an unreachable server skips the suite
loudly (and fails it under CI or --dbos-require-servers), and that the suite fails
datasources that break the contract. pytest runs of an author's project are real
subprocesses in a temporary directory.
"""

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from beartype.roar import BeartypeCallHintParamViolation

import pytest_dbos_sdk
from dbos_sdk.datasource import check_pg_schema_name
from dbos_sdk.testing import KitScratch, NotSupported
from dbos_sdk.testing._common import SKIP_TAG

TESTS_DIR = Path(__file__).resolve().parent


def test_the_plugin_is_loaded_from_its_entry_point_without_importing_dbos_sdk(
    pytestconfig: pytest.Config,
) -> None:
    assert pytestconfig.pluginmanager.get_plugin("dbos_sdk") is pytest_dbos_sdk
    probe = (
        "import importlib.metadata as md, json, sys\n"
        "[ep] = [e for e in md.entry_points(group='pytest11') if e.name == 'dbos_sdk']\n"
        "ep.load()\n"
        "print(json.dumps([ep.value, sorted(m for m in sys.modules if m.startswith('dbos'))]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == ["pytest_dbos_sdk", []]


def test_beartype_still_checks_dbos_sdk_in_this_run_with_the_plugin_loaded() -> None:
    with pytest.raises(BeartypeCallHintParamViolation):
        check_pg_schema_name(123)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    with pytest.raises(BeartypeCallHintParamViolation):
        KitScratch(directory="/tmp", token=7)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    with pytest.raises(BeartypeCallHintParamViolation):
        NotSupported(reason=None)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def test_the_suite_and_the_plugin_name_skipped_checks_alike() -> None:
    assert SKIP_TAG == pytest_dbos_sdk.SKIP_TAG


# --- an author's project, run by pytest in a subprocess ---------------------------------------


def run_pytest(
    project: Path, *args: str, ci: bool = False
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run pytest in ``project``; the outcome of each test by ``Class::name`` (or ``name``)."""
    junit = project / "junit.xml"
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(TESTS_DIR)  # the author's kits build on this repository's
    if ci:
        env["CI"] = "true"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-rs",
            f"--junitxml={junit}",
            *args,
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    outcomes: dict[str, str] = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            cls = case.get("classname", "").rpartition(".")[2]
            key = f"{cls}::{case.get('name')}" if cls[:1].isupper() else str(case.get("name"))
            kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            outcomes[key] = kinds[0] if kinds else "passed"
    return done, outcomes


def test_a_run_that_does_not_use_the_suite_sees_nothing_of_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(
        textwrap.dedent(
            """
            import sys

            def test_plain():
                assert not [m for m in sys.modules if m.startswith("dbos_sdk")]
            """
        )
    )
    done, outcomes = run_pytest(tmp_path, "--dbos-require-servers")
    assert outcomes == {"test_plain": "passed"}, done.stdout + done.stderr
    assert "conformance" not in done.stdout


def test_the_isolated_registry_fixture_forgets_what_a_test_registered(tmp_path: Path) -> None:
    (tmp_path / "test_registry.py").write_text(
        textwrap.dedent(
            """
            from dbos_sdk import DBOS

            def names():
                return [reg.name for reg in DBOS.get_registered_workflows()]

            def test_registers(dbos_isolated_registry):
                DBOS.workflow(name="left_behind")(lambda: 1)
                assert "left_behind" in names()

            def test_then_finds_nothing():
                assert "left_behind" not in names()
            """
        )
    )
    done, outcomes = run_pytest(tmp_path)
    assert outcomes == {"test_registers": "passed", "test_then_finds_nothing": "passed"}, (
        done.stdout + done.stderr
    )


UNREACHABLE = """
from children.ds_kits import SQLiteKit
from dbos_sdk.testing import DataSourceConformance

factory_calls = []


class UnreachableKit(SQLiteKit):
    def unreachable(self):
        factory_calls.append(1)
        return "no route to the test server"


class TestUnreachable(DataSourceConformance):
    kit_factory = "test_unreachable:UnreachableKit"


def test_the_server_was_asked_once():
    assert len(factory_calls) <= 1
"""


def test_an_unreachable_server_skips_the_suite_loudly_and_fails_it_under_ci(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_unreachable.py").write_text(UNREACHABLE)
    select = ("-k", "writes_and_checkpoint or outside_a_workflow or asked_once")
    checks = [
        "TestUnreachable::test_writes_and_checkpoint_commit_together_and_the_step_replays",
        "TestUnreachable::test_outside_a_workflow_a_transaction_runs_once_unrecorded",
    ]
    done, outcomes = run_pytest(tmp_path, *select)
    assert [outcomes.get(c) for c in checks] == ["skipped", "skipped"], done.stdout
    assert outcomes["test_the_server_was_asked_once"] == "passed", done.stdout
    assert "dbos-sdk conformance checks that did NOT run" in done.stdout
    assert (
        "2 x the server of test_unreachable:UnreachableKit is unreachable: "
        "no route to the test server" in done.stdout
    )
    for how in ({"ci": True}, {"ci": False, "flag": True}):
        flags = ["--dbos-require-servers"] if how.get("flag") else []
        done, outcomes = run_pytest(tmp_path, *select, *flags, ci=bool(how["ci"]))
        assert [outcomes.get(c) for c in checks] == ["error", "error"], done.stdout
        why = "CI is set" if how["ci"] else "--dbos-require-servers is given"
        assert why in done.stdout and "no route to the test server" in done.stdout


MUTANTS = """
from children.ds_kits import SQLiteKit
from dbos_sdk.testing import DataSourceConformance
from dbos_sqlite_datasource import SQLiteDataSource


class NoCheckpoint(SQLiteDataSource):
    \"\"\"Commits the transaction without its completion checkpoint.\"\"\"

    def _commit_transaction(self, client, checkpoint):
        client.execute("COMMIT")
        return True


class CheckpointAfterCommit(SQLiteDataSource):
    \"\"\"Writes the checkpoint in a transaction of its own, after the commit.\"\"\"

    def _commit_transaction(self, client, checkpoint):
        client.execute("COMMIT")
        return checkpoint is None or self._write_error_checkpoint(checkpoint)


class IgnoresReadOnly(SQLiteDataSource):
    def _open_transaction(self, config):
        writable = type(config)(read_only=False, begin_mode=config.begin_mode)
        return super()._open_transaction(writable)


class NothingRetriable(SQLiteDataSource):
    def is_retriable_error(self, error):
        return False


class KeepsConnections(SQLiteDataSource):
    def destroy(self):
        with self._lock:
            self._open = False  # the idle connections stay open


def kit_of(cls):
    class Kit(SQLiteKit):
        def make_datasource(self, name, *, retry=None, create_checkpoint_schema=True):
            return cls(
                name, self.path, retry=retry, create_checkpoint_schema=create_checkpoint_schema
            )

    return Kit


NoCheckpointKit = kit_of(NoCheckpoint)
CheckpointAfterCommitKit = kit_of(CheckpointAfterCommit)
IgnoresReadOnlyKit = kit_of(IgnoresReadOnly)
NothingRetriableKit = kit_of(NothingRetriable)
KeepsConnectionsKit = kit_of(KeepsConnections)


class TestNoCheckpoint(DataSourceConformance):
    kit_factory = "test_mutants:NoCheckpointKit"


class TestCheckpointAfterCommit(DataSourceConformance):
    kit_factory = "test_mutants:CheckpointAfterCommitKit"


class TestIgnoresReadOnly(DataSourceConformance):
    kit_factory = "test_mutants:IgnoresReadOnlyKit"


class TestNothingRetriable(DataSourceConformance):
    kit_factory = "test_mutants:NothingRetriableKit"


class TestKeepsConnections(DataSourceConformance):
    kit_factory = "test_mutants:KeepsConnectionsKit"


def not_a_kit(scratch):
    return 42


class TestNotAKit(DataSourceConformance):
    kit_factory = "test_mutants:not_a_kit"


class TestNoFactory(DataSourceConformance):
    pass
"""

# Each broken datasource, and the checks that must catch it.
CAUGHT = {
    "TestNoCheckpoint": [
        "test_writes_and_checkpoint_commit_together_and_the_step_replays",
        "test_sigkill_between_the_datasource_commit_and_the_step_record_recovery_replays_the_checkpoint[success]",
        "test_duplicate_execution_rolls_back_and_returns_the_winners_outcome[success]",
    ],
    "TestCheckpointAfterCommit": [
        "test_duplicate_execution_rolls_back_and_returns_the_winners_outcome[success]",
    ],
    "TestIgnoresReadOnly": [
        "test_a_write_in_a_read_only_transaction_is_rejected_not_retried_not_checkpointed",
        "test_transaction_settings_are_applied_and_do_not_leak_to_the_next_transaction",
    ],
    "TestNothingRetriable": [
        "test_retry_bound_reached_gives_the_named_error_recorded_as_the_outcome",
        "test_concurrent_conflicting_transactions_the_loser_is_retried_and_no_update_is_lost",
    ],
    "TestKeepsConnections": ["test_launch_opens_connections_and_shutdown_closes_every_one"],
}


def test_the_suite_fails_datasources_that_break_the_contract(tmp_path: Path) -> None:
    (tmp_path / "test_mutants.py").write_text(MUTANTS)
    wanted = [f"{cls}::{check}" for cls, checks in CAUGHT.items() for check in checks]
    # The same checks pass for the real datasource: the failures are the mutants'.
    wanted += [f"TestSQLite::{check}" for check in CAUGHT["TestNoCheckpoint"]]
    (tmp_path / "test_mutants.py").write_text(
        MUTANTS
        + "\n\nclass TestSQLite(DataSourceConformance):\n"
        + '    kit_factory = "children.ds_kits:SQLiteKit"\n'
    )
    bad_kits = ["TestNotAKit::test_outside_a_workflow_a_transaction_runs_once_unrecorded"]
    bad_kits += ["TestNoFactory::test_outside_a_workflow_a_transaction_runs_once_unrecorded"]
    done, outcomes = run_pytest(tmp_path, *[f"test_mutants.py::{w}" for w in wanted + bad_kits])
    report = done.stdout + done.stderr
    for node in wanted:
        expected = "passed" if node.startswith("TestSQLite::") else "failure"
        assert outcomes.get(node) == expected, f"{node}: {outcomes.get(node)}\n{report}"
    assert outcomes[bad_kits[0]] == "error"
    assert "not a DataSourceKit or an AsyncDataSourceKit" in report
    assert outcomes[bad_kits[1]] == "error"
    assert "TestNoFactory runs the datasource conformance suite but names no kit" in report


def test_the_documented_kit_passes_the_suite(tmp_path: Path) -> None:
    """The worked example in docs/datasources.md, as an author would copy it."""
    doc = (TESTS_DIR.parent / "docs" / "datasources.md").read_text()
    section = doc[doc.index("## Prove your datasource with the conformance suite") :]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:3]]
    assert blocks[0].startswith("# tests/my_kits.py") and "class LiteKit" in blocks[0]
    assert blocks[1].startswith("# tests/test_my_datasource.py")
    (tmp_path / "my_kits.py").write_text(blocks[0])
    (tmp_path / "test_my_datasource.py").write_text(blocks[1])
    done, outcomes = run_pytest(tmp_path, "-m", "dbos_conformance")
    report = done.stdout + done.stderr
    passed = [k for k, v in outcomes.items() if v == "passed"]
    skipped = sorted(k.partition("::")[2] for k, v in outcomes.items() if v == "skipped")
    assert len(passed) == len(outcomes) - 4, report
    assert skipped == [
        "test_concurrent_duplicate_loses_the_race_and_returns_the_winners_outcome[error]",
        "test_concurrent_duplicate_loses_the_race_and_returns_the_winners_outcome[success]",
        "test_launch_opens_connections_and_shutdown_closes_every_one",
        "test_lost_connection_is_retried_on_a_new_one",
    ], report
    assert "SQLite has one writer at a time" in report
