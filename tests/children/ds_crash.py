"""Child process of test_datasource_crash.py: run one transaction workflow on one
datasource and die at an exact point, or recover it.

``python -m children.ds_crash '<json>'`` from tests/. In the ``crash`` phase, the system
database's ``record_step`` is wrapped, in this process only, so that recording the
transaction's step SIGKILLs the process: the datasource transaction (writes and completion
checkpoint) has committed, and the system database has not recorded the step. In the
``recover`` phase, ``DBOS.launch()`` recovers the pending workflow; the child prints its
outcome as one JSON line. The transaction body appends a line to a marker file each time
it runs, so the test can count runs across both processes.
"""

import json
import os
import signal
import sys
from typing import Any

from children.ds_kits import Fail, Hook, Kit, Result, Sql
from dbos_sdk import DBOS, DBOSConfig, SetWorkflowID
from dbos_sdk._runtime import current_runtime
from dbos_sdk._sysdb import StepRow

TX_NAME = "ds_crash.tx"


def main() -> None:
    args: dict[str, Any] = json.loads(sys.argv[1])
    kit = Kit(args["kind"], args["pg_url"], args["schema"], args["sqlite_path"])
    DBOS(DBOSConfig("ds-crash", system_database_url=args["sysdb"]))
    ds = kit.datasource("crash-ds")

    def mark(a: tuple[Any, ...]) -> None:
        with open(args["marker"], "a") as f:
            f.write(f"{a[0]}\n")

    end = (
        Result(lambda _rows, a: f"done {a[0]}")
        if args["mode"] == "success"
        else Fail(lambda a: ValueError(f"failed {a[0]}"))
    )
    insert = Sql("INSERT INTO {items} (v) VALUES (?)", lambda a: (a[0],))
    tx = kit.define(ds, TX_NAME, [Hook(mark), insert, end])
    wf = kit.workflow("ds_crash.wf", tx)
    DBOS.launch()
    if args["phase"] == "crash":
        rt = current_runtime()
        assert rt is not None
        record = rt.sysdb.record_step

        def record_or_die(workflow_id: str, step: StepRow) -> StepRow | None:
            if step.function_name == TX_NAME:
                os.kill(os.getpid(), signal.SIGKILL)
            return record(workflow_id, step)

        rt.sysdb.record_step = record_or_die  # type: ignore[method-assign]
        with SetWorkflowID(args["wfid"]):
            kit.call(wf, args["token"])
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
    main()
