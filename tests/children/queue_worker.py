"""A queue worker process for the multi-process queue test.

Run as ``python -m children.queue_worker '<json>'`` from tests/ with url, schema,
executor_id, queue, concurrency, worker_concurrency and out (this process's file). It
declares the queue, launches, prints ``ready``, then obeys lines on stdin:
``enqueue <n> <prefix>`` enqueues n workflows with IDs ``<prefix>-<i>`` and prints
``enqueued``; ``stop`` shuts DBOS down and exits.

Each workflow's one step appends the workflow ID to ``out``: the lines of all workers'
files together say which process ran each workflow, and how many times.
"""

import json
import sys
import time

from dbos_sdk import DBOS, DBOSConfig, Queue, SetWorkflowID

_out = ""


@DBOS.step(name="queue_worker.record")
def record(workflow_id: str) -> None:
    with open(_out, "a") as f:
        f.write(workflow_id + "\n")
    time.sleep(0.01)  # long enough that workflows overlap and the limits matter


@DBOS.workflow(name="queue_worker.work")
def work(i: int) -> int:
    wfid = DBOS.workflow_id
    assert wfid is not None
    record(wfid)
    return i


def main() -> None:
    global _out
    args = json.loads(sys.argv[1])
    _out = args["out"]
    queue = Queue(
        args["queue"],
        concurrency=args["concurrency"],
        worker_concurrency=args["worker_concurrency"],
    )
    DBOS(
        DBOSConfig(
            "queue-worker",
            system_database_url=args["url"],
            postgres_schema=args["schema"],
            executor_id=args["executor_id"],
            queue_poll_interval_s=0.02,
        )
    )
    DBOS.launch()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "enqueue":
            for i in range(int(command[1])):
                with SetWorkflowID(f"{command[2]}-{i}"):
                    queue.enqueue(work, i)
            print("enqueued", flush=True)
        elif command[0] == "stop":
            DBOS.shutdown()
            print("stopped", flush=True)
            return


if __name__ == "__main__":
    main()
