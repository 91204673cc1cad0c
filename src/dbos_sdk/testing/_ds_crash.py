"""Child process of the conformance suite's crash-window check.

``python -m dbos_sdk.testing._ds_crash '<json>'``: rebuild the kit from its factory path
and scratch, register one transaction workflow, and either die at an exact point (phase
``crash``) or recover (phase ``recover``).

In the crash phase the system database's ``record_step`` is wrapped, in this process
only, so that recording the transaction's step SIGKILLs the process: the datasource
transaction (its write and its completion checkpoint) has committed, and the system
database has not recorded the step. In the recover phase ``DBOS.launch()`` recovers the
pending workflow, and the child prints its outcome as one JSON line. The body appends a
line to a marker file each time it runs, so the parent counts runs across both processes.
"""

import json
import os
import signal
import sys
from typing import Any

from dbos_sdk import DBOS, DBOSConfig, SetWorkflowID
from dbos_sdk._runtime import current_runtime
from dbos_sdk._sysdb import StepRow

from ._ds_harness import Db, Hook, Raise, Return, build_kit, call, define, workflow
from ._ds_kit import KitScratch

TX_NAME = "dbos_conformance.crash_tx"
WF_NAME = "dbos_conformance.crash_wf"
DS_NAME = "crash-ds"


def main(raw: str) -> None:
    args: dict[str, Any] = json.loads(raw)
    for entry in reversed(args["sys_path"]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    kit = build_kit(args["factory"], KitScratch(**args["scratch"]))
    DBOS(DBOSConfig("dbos-conformance-crash", system_database_url=args["sysdb"]))
    ds = kit.make_datasource(DS_NAME)

    def mark(a: tuple[Any, ...]) -> None:
        with open(args["marker"], "a") as f:
            f.write(f"{a[0]}\n")

    end = (
        Return(lambda _rows, a: f"done {a[0]}")
        if args["ending"] == "success"
        else Raise(lambda a: ValueError(f"failed {a[0]}"))
    )
    tx = define(
        kit, DS_NAME, TX_NAME, [Hook(mark), Db(lambda _r, a: kit.insert_item(ds, a[0])), end]
    )
    wf = workflow(kit, WF_NAME, tx)
    DBOS.launch()
    if args["phase"] == "crash":
        rt = current_runtime()
        assert rt is not None
        record = rt.sysdb.record_step

        def record_or_die(
            workflow_id: str, step: StepRow, *, recorded_elsewhere: bool = False
        ) -> StepRow | None:
            if step.function_name == TX_NAME:
                os.kill(os.getpid(), signal.SIGKILL)
            return record(workflow_id, step, recorded_elsewhere=recorded_elsewhere)

        rt.sysdb.record_step = record_or_die  # type: ignore[method-assign]
        with SetWorkflowID(args["wfid"]):
            call(kit, wf, args["token"])
        print("not killed", flush=True)
        sys.exit(3)
    handle = DBOS.retrieve_workflow(args["wfid"])
    try:
        result: dict[str, Any] = {"value": handle.get_result(timeout=30)}
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
    DBOS.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
