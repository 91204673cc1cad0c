"""Workflows that crash tests run in a child process and recover in the test process.

Run as ``python -m children.crash_app '<json>'`` from tests/ (see :func:`main`). The test
process imports this module too, so that the recovering process registers the same
workflows and queues under the same names. A crash point, set only by :func:`main`, makes
the child print one line and block at that exact place until the test SIGKILLs it.

Every step appends a line to a file named by its workflow's argument, so the test can
count how many times each step body ran, across processes.
"""

import asyncio
import json
import sys
import threading
import time

from dbos_sdk import DBOS, DBOSConfig, Queue, SetWorkflowID

STEPS = 5
EXPECTED_RESULT = sum(i * i for i in range(1, STEPS + 1))

one_at_a_time = Queue("crash_app.one_at_a_time", concurrency=1)
two_per_worker = Queue("crash_app.two_per_worker", worker_concurrency=2)

_crash_point: tuple[str, int] | None = None
"""("after", k): stop once step k returned (so its checkpoint is committed);
("inside", k): stop inside step k's body, after its side effect."""

step_seconds = 0.0
"""How long each step body sleeps (the test process sets it to widen a race window)."""

_running_lock = threading.Lock()
_running = 0
max_running = 0
"""The most step bodies that ran at once in this process."""


_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one whole line for the test (threads must not interleave their lines)."""
    with _print_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _stop_here(what: str) -> None:
    say(f"{DBOS.workflow_id} {what}")
    threading.Event().wait()  # until SIGKILL


def _append_line(path: str, i: int) -> int:
    global _running, max_running
    with _running_lock:
        _running += 1
        max_running = max(max_running, _running)
    try:
        with open(path, "a") as f:
            f.write(f"{i}\n")
        if _crash_point == ("inside", i):
            _stop_here(f"inside step {i}")
        time.sleep(step_seconds)
        return i * i
    finally:
        with _running_lock:
            _running -= 1


@DBOS.step(name="crash_app.append_line")
def append_line(path: str, i: int) -> int:
    return _append_line(path, i)


@DBOS.workflow(name="crash_app.five_steps")
def five_steps(path: str) -> int:
    total = 0
    for i in range(1, STEPS + 1):
        total += append_line(path, i)
        if _crash_point == ("after", i):
            _stop_here(f"after step {i}")
    return total


@DBOS.step(name="crash_app.append_line_async")
async def append_line_async(path: str, i: int) -> int:
    await asyncio.sleep(0)
    return _append_line(path, i)


@DBOS.workflow(name="crash_app.five_async_steps")
async def five_async_steps(path: str) -> int:
    total = 0
    for i in range(1, STEPS + 1):
        total += await append_line_async(path, i)
        if _crash_point == ("after", i):
            _stop_here(f"after step {i}")
    return total


@DBOS.workflow(name="crash_app.parent_of_five")
def parent_of_five(path: str) -> int:
    """Runs five_steps as a child workflow (ID ``<parent ID>-1``), then adds one."""
    return five_steps(path) + 1


WORKFLOWS = {
    "five_steps": five_steps,
    "five_async_steps": five_async_steps,
    "parent_of_five": parent_of_five,
}


def step_counts(path: str) -> list[int]:
    """How many times each step body (1..STEPS) appended its line."""
    try:
        with open(path) as f:
            lines = f.read().split()
    except FileNotFoundError:
        lines = []
    return [lines.count(str(i)) for i in range(1, STEPS + 1)]


def main() -> None:
    """Arguments (one JSON object): url, schema, executor_id, crash ([where, k]), optional
    max_recovery_attempts, and ``run`` (list of [workflow_id, path]: ``workflow``, a name
    in WORKFLOWS, started at once) or ``queue`` and ``enqueue`` (list of [workflow_id,
    path]: five_steps enqueued in order). Pending workflows of the executor are
    recovered at launch, and stop at the crash point like new ones."""
    global _crash_point
    args = json.loads(sys.argv[1])
    _crash_point = (args["crash"][0], int(args["crash"][1]))
    DBOS(
        DBOSConfig(
            "crash-app",
            system_database_url=args["url"],
            postgres_schema=args["schema"],
            executor_id=args["executor_id"],
            queue_poll_interval_s=0.05,
            max_recovery_attempts=args.get("max_recovery_attempts", 100),
        )
    )
    DBOS.launch()
    workflow = WORKFLOWS[args.get("workflow", "five_steps")]
    for wfid, path in args.get("run", []):
        with SetWorkflowID(wfid):
            DBOS.start_workflow(workflow, path)
    queue = {q.name: q for q in (one_at_a_time, two_per_worker)}.get(args.get("queue", ""))
    for wfid, path in args.get("enqueue", []):
        assert queue is not None
        with SetWorkflowID(wfid):
            queue.enqueue(five_steps, path)
    say("started")
    threading.Event().wait()  # the crash point stops the workflows; the test kills us


if __name__ == "__main__":
    main()
