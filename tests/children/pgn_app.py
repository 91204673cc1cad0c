"""A child process for tests/test_pgnotify_receive.py: one PgChangeReceiver, one workflow.

Run as ``python pgn_app.py '<json settings>'`` (see ``main``). It prints ``READY`` once
launched, ``STARTED <workflow id>`` after every start the receiver made, and finally
``SUMMARY <json>`` with every workflow of its function; a launch failure prints
``LAUNCH_ERROR <json>`` and exits 3. With ``kill_on_state_advance`` it SIGKILLs itself
when the receiver tries to advance its dispatch state: after a workflow start, before
the acknowledgement.
"""

from beartype import BeartypeConf
from beartype.claw import beartype_package

for _package in ("dbos_sdk", "dbos_pgnotify_receive"):  # as tests/conftest.py does
    beartype_package(_package, conf=BeartypeConf(claw_is_pep526=False, is_pep484_tower=True))

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from typing import Any  # noqa: E402

from dbos_pgnotify_receive import PgChangeReceiver  # noqa: E402
from dbos_sdk import (  # noqa: E402
    DBOS,
    DBOSConfig,
    DBOSExternalState,
    MethodRegistration,
    StartWorkflowOptions,
    WorkflowHandle,
)

WORKFLOW = "pgn_app.on_change"


def say(*parts: str) -> None:
    print(*parts, flush=True)


def instrument(kill_on_state_advance: bool) -> None:
    """Report every start; optionally die instead of advancing the dispatch state."""
    original = DBOS.start_workflow_registered

    def start(
        reg: MethodRegistration,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: StartWorkflowOptions,
    ) -> WorkflowHandle[Any]:
        handle = original(reg, args, kwargs, options)
        say("STARTED", handle.workflow_id)
        return handle

    def die(state: DBOSExternalState) -> DBOSExternalState:
        say("KILLING before advancing", state.key, "to", repr(state.value))
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    DBOS.start_workflow_registered = staticmethod(start)  # type: ignore[method-assign]
    if kill_on_state_advance:
        DBOS.upsert_event_dispatch_state = staticmethod(die)  # type: ignore[method-assign]


def main(settings: dict[str, Any]) -> int:
    receiver = PgChangeReceiver("pgn-test", settings.get("receiver_url", settings["url"]))

    @receiver.on_change(
        table=settings["table"],
        key_columns=settings.get("key_columns", ["id"]),
        version_column=settings.get("version_column", "version"),
        mode=settings["mode"],
        poll_interval=settings.get("poll_interval", 0.2),
        install_trigger=settings.get("install_trigger", False),
    )
    @DBOS.workflow(name=WORKFLOW)
    def on_change(record: dict[str, Any]) -> list[str]:
        return [str(record["id"]), str(record[settings.get("version_column", "version")])]

    sysdb = settings["sysdb"]
    if sysdb.startswith("sqlite"):
        config = DBOSConfig("pgn-test", system_database_url=sysdb, executor_id="pgn-test")
    else:
        config = DBOSConfig(
            "pgn-test",
            system_database_url=sysdb,
            postgres_schema=settings["sys_schema"],
            executor_id="pgn-test",
        )
    DBOS(config)
    instrument(settings.get("kill_on_state_advance", False))
    try:
        DBOS.launch()
    except Exception as exc:
        say("LAUNCH_ERROR", json.dumps({"type": type(exc).__name__, "message": str(exc)}))
        return 3
    say("READY")
    expect = int(settings.get("expect", 0))
    deadline = time.monotonic() + float(settings.get("timeout", 20))
    while time.monotonic() < deadline:
        done = DBOS.list_workflows(name=WORKFLOW, status="SUCCESS", load_output=False)
        if len(done) >= expect:
            break
        time.sleep(0.05)
    time.sleep(float(settings.get("settle", 0.5)))  # room for duplicates to show up
    workflows = [
        {"id": s.workflow_id, "status": s.status, "output": s.output}
        for s in DBOS.list_workflows(name=WORKFLOW)
    ]
    say("SUMMARY", json.dumps({"workflows": workflows}))
    DBOS.shutdown(workflow_timeout_s=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
