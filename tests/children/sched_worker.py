"""A process that runs one every-second scheduled workflow, for the scheduler tests.

Run as ``python -m children.sched_worker '<json>'`` from tests/ with url, schema,
executor_id and mode. It launches, prints ``launched``, then prints ``ran <scheduled
time ISO>`` from the workflow's step for each tick it executes, until it is killed or
reads ``stop`` on stdin (then it shuts down and prints ``stopped``).

The workflow and step names are fixed (:data:`WORKFLOW`, :data:`STEP`) so that the test
process can define the same workflow and take over the schedule.
"""

import json
import sys
from datetime import datetime

from dbos_sdk import DBOS, DBOSConfig

WORKFLOW = "sched_worker.tick"
STEP = "sched_worker.record"


def define(mode: str, out: list[str] | None = None) -> None:
    """Register the scheduled workflow (in this child or in the test process)."""

    @DBOS.step(name=STEP)
    def record(scheduled: str) -> None:
        if out is None:
            print(f"ran {scheduled}", flush=True)
        else:
            out.append(scheduled)

    @DBOS.scheduled(
        "* * * * * *", mode="when_active" if mode == "when_active" else "exactly_once_per_interval"
    )
    @DBOS.workflow(name=WORKFLOW)
    def tick(scheduled_time: datetime, actual_time: datetime) -> None:
        record(scheduled_time.isoformat())


def main() -> None:
    args = json.loads(sys.argv[1])
    define(args["mode"])
    DBOS(
        DBOSConfig(
            "sched-worker",
            system_database_url=args["url"],
            postgres_schema=args["schema"],
            executor_id=args["executor_id"],
        )
    )
    DBOS.launch()
    print("launched", flush=True)
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    DBOS.shutdown()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
