"""The child process of the receiver crash checks, and the test process's handle on it.

The child puts the test process's ``sys.path`` first, imports the kit factory's module
(before anything else of dbos_sdk, so the module may set the process up, e.g. beartype),
builds the kit on the same scratch, binds the receiver to the conformance workflow,
launches DBOS and prints ``launched``. It prints ``started <workflow ID>`` after
every start the receiver makes. Once it reads ``arm`` on stdin (it answers ``armed``),
the first start of a workflow ID it has not started before kills the process with
SIGKILL, either right *before* the start (nothing recorded: the event must be redelivered
and started after a restart) or right *after* it returned (recorded, not acknowledged:
the redelivery must start nothing new). It prints ``dying <when> <json>`` first, with the
workflow ID and the event key.
"""

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from dbos_sdk import DBOS, DBOSConfig
from dbos_sdk.testing._ds_kit import KitScratch
from dbos_sdk.testing._receiver_session import (
    StartObserver,
    build_receiver_kit,
    check,
    register_target,
)
from dbos_sdk.testing._receivers import Delivery, ReceiverKit

CrashPoint = Literal["before", "after"]
"""Where the child dies: right before the start of a new event's workflow, or right
after it returned (before the receiver could acknowledge the event)."""

_BOOTSTRAP = """\
import importlib, json, sys
spec = json.loads(sys.argv[1])
sys.path[:0] = [p for p in spec["sys_path"] if p not in sys.path]
importlib.import_module(spec["factory"].partition(":")[0])
from dbos_sdk.testing._receiver_child import child_main
child_main(spec)
"""
_print_lock = threading.Lock()


def _say(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


# --- in the child -------------------------------------------------------------------------


class _Crash:
    """The start hooks of the child: report each start, die at the armed point."""

    kit: ReceiverKit
    when: CrashPoint
    armed: bool
    started: set[str]

    def __init__(self, kit: ReceiverKit, when: CrashPoint) -> None:
        self.kit = kit
        self.when = when
        self.armed = False
        self.started = set()

    def before(
        self, workflow_id: str | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        if self.when == "before" and self.armed and workflow_id not in self.started:
            self._die(workflow_id, args, kwargs)

    def after(
        self, workflow_id: str | None, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        new = workflow_id not in self.started
        if workflow_id is not None:
            self.started.add(workflow_id)
        if self.when == "after" and self.armed and new:
            self._die(workflow_id, args, kwargs)
        _say(f"started {workflow_id}")

    def _die(self, workflow_id: str | None, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        try:
            key: str | None = self.kit.event_key(args, kwargs)
        except Exception:
            key = None
        _say(f"dying {self.when} " + json.dumps({"workflow_id": workflow_id, "key": key}))
        os.kill(os.getpid(), signal.SIGKILL)


def child_main(spec: dict[str, Any]) -> None:
    """Run the receiver of a kit in this process (see the module docstring)."""
    kit = build_receiver_kit(spec["factory"], KitScratch(**spec["scratch"]))
    target = register_target(kit, None)
    cfg: dict[str, Any] = spec["config"]
    DBOS(
        DBOSConfig(
            cfg["name"],
            system_database_url=cfg["system_database_url"],
            executor_id=cfg["executor_id"],
            postgres_schema=cfg["postgres_schema"],
            application_version=cfg["application_version"],
        )
    )
    kit.bind(target)
    crash = _Crash(kit, spec["when"])
    with StartObserver(before=crash.before, after=crash.after).installed():
        DBOS.launch()
        _say("launched")
        for line in sys.stdin:
            if line.strip() == "arm":
                crash.armed = True
                _say("armed")
            elif line.strip() == "stop":
                break
        DBOS.shutdown(workflow_timeout_s=2)
    _say("stopped")


# --- in the test process --------------------------------------------------------------------


class ChildProcess:
    """A running child: lines it prints arrive on a queue; it is killed at cleanup."""

    label: str
    proc: "subprocess.Popen[str]"
    seen: list[str]
    _lines: "queue.Queue[str | None]"
    _stderr_path: Path

    def __init__(
        self, factory: str, kit: ReceiverKit, config: DBOSConfig, when: CrashPoint
    ) -> None:
        spec = {
            "factory": factory,
            "scratch": {"directory": kit.scratch.directory, "token": kit.scratch.token},
            "sys_path": [entry or os.getcwd() for entry in sys.path],
            "when": when,
            "config": {
                "name": config.name,
                "system_database_url": config.system_database_url,
                "executor_id": config.executor_id,
                "postgres_schema": config.postgres_schema,
                "application_version": config.application_version,
            },
        }
        log_dir = Path(kit.scratch.directory)
        self.label = f"receiver child ({when} start)"
        self._stderr_path = log_dir / f"receiver-child-{when}.stderr"
        with self._stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOTSTRAP, json.dumps(spec)],
                cwd=log_dir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.seen = []
        self._lines = queue.Queue()
        threading.Thread(target=self._read, name="receiver-child-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, prefix: str, timeout: float) -> str:
        """The next line starting with ``prefix`` (earlier lines are skipped)."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"the {self.label} printed no {prefix!r} line within {timeout:.0f}s; "
                    f"it printed {self.seen[-20:]}\n{self.stderr_tail()}"
                ) from None
            if line is None:
                self.proc.wait()
                raise AssertionError(
                    f"the {self.label} exited with {self.proc.returncode} before printing "
                    f"{prefix!r}; it printed {self.seen[-20:]}\n{self.stderr_tail()}"
                )
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def dying(self, timeout: float) -> Delivery:
        """Wait for the child to announce its death and die by SIGKILL; the event whose
        start it died around."""
        line = self.expect("dying ", timeout)
        found: dict[str, Any] = json.loads(line.split(" ", 2)[2])
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the {self.label} did not die\n{self.stderr_tail()}") from None
        check(
            code == -signal.SIGKILL,
            f"the {self.label} exited with {code}, not by SIGKILL\n{self.stderr_tail()}",
        )
        workflow_id, key = found["workflow_id"], found["key"]
        check(
            isinstance(workflow_id, str),
            "the receiver started a workflow without a workflow ID (StartWorkflowOptions("
            "workflow_id=...)): its ID is random, not derived from the event",
        )
        check(isinstance(key, str), f"the kit's event_key failed in the child for {line!r}")
        return Delivery(key=key, workflow_id=workflow_id)

    def stderr_tail(self, size: int = 4000) -> str:
        text = self._stderr_path.read_text(errors="replace")
        return f"--- stderr of the {self.label} ---\n{text[-size:]}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


@contextlib.contextmanager
def spawned(
    factory: str, kit: ReceiverKit, config: DBOSConfig, when: CrashPoint
) -> Generator[ChildProcess, None, None]:
    """A child running the kit's receiver, killed (if still alive) when the block ends."""
    proc = ChildProcess(factory, kit, config, when)
    try:
        yield proc
    finally:
        proc.close()
