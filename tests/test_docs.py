"""The guides' worked examples run, and the generated API reference is current."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INBOX_EXAMPLE = ROOT / "docs" / "examples" / "inbox_receiver.py"

_INBOX_DRIVER = """
import json, runpy, sys, time
from dbos_sdk import DBOS, DBOSConfig
runpy.run_path(sys.argv[1], run_name="inbox_example")
DBOS(DBOSConfig("inbox", system_database_url=sys.argv[2]))
try:
    DBOS.launch()
except Exception as exc:
    print(json.dumps({"launch_error": f"{type(exc).__name__}: {exc}"}))
    sys.exit(0)
want = int(sys.argv[3])
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    done = DBOS.list_workflows(status="SUCCESS")
    if len(done) >= want:
        break
    time.sleep(0.05)
time.sleep(0.5)  # a second dispatch pass must not start anything new
print(json.dumps({w.workflow_id: w.output for w in DBOS.list_workflows()}))
DBOS.shutdown()
"""


def _run_inbox(inbox: Path, db: Path, want: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _INBOX_DRIVER, str(INBOX_EXAMPLE), f"sqlite:///{db}", str(want)],
        env={**os.environ, "INBOX_DIR": str(inbox)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_worked_receiver_example_starts_one_workflow_per_file_across_restarts(
    tmp_path: Path,
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    db = tmp_path / "sys.sqlite"
    (inbox / "a.txt").write_text("one two three")
    (inbox / "b.txt").write_text("four five")
    first = _run_inbox(inbox, db, 2)
    assert first == {"inbox-uploads-a.txt": 3, "inbox-uploads-b.txt": 2}
    (inbox / "c.txt").write_text("six")
    second = _run_inbox(inbox, db, 3)
    assert second == {**first, "inbox-uploads-c.txt": 1}


def test_worked_receiver_example_fails_launch_naming_function_and_directory(
    tmp_path: Path,
) -> None:
    result = _run_inbox(tmp_path / "missing", tmp_path / "sys.sqlite", 0)
    error = str(result["launch_error"])
    assert error.startswith("DBOSLaunchError")
    assert "process_upload" in error and str(tmp_path / "missing") in error


def test_api_reference_is_generated_from_the_current_docstrings() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_api_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr
