"""Fan out on a queue, fan the results back in: on SQLite, no server needed.

    python examples/queue_fanout.py          # writes queue_fanout.sqlite here
    dbos-sdk workflow list --queue fanout --db-url sqlite:///queue_fanout.sqlite

A parent workflow enqueues one child workflow per word on a queue that runs at most
three at once, then waits for them and adds up their results. Each child is a durable
workflow of its own, and the parent records which children it started: after a crash,
finished children are not run again. Set DBOS_SYSTEM_DATABASE_URL to use another database.
"""

import os
import time
import uuid

from dbos_sdk import DBOS, DBOSConfig, Queue, SetWorkflowID, WorkflowStatus

WORDS = ["durable", "workflows", "survive", "crashes", "and", "restarts", "intact"]

fanout = Queue("fanout", concurrency=3)


@DBOS.step()
def count_letters(word: str) -> int:
    time.sleep(0.1)  # pretend to work, so that the concurrency limit shows
    return len(word)


def most_at_once(children: list[WorkflowStatus]) -> int:
    """The most children running at one instant, from their recorded start and end times."""
    edges = sorted(
        [(w.started_at or w.created_at, 1) for w in children]
        + [(w.completed_at or w.updated_at, -1) for w in children]
    )
    running = most = 0
    for _, delta in edges:
        running += delta
        most = max(most, running)
    return most


@DBOS.workflow()
def measure_word(word: str) -> int:
    return count_letters(word)


@DBOS.workflow()
def measure_all(words: list[str]) -> int:
    """Enqueue every child first, then wait: they run three at a time."""
    handles = [fanout.enqueue(measure_word, word) for word in words]
    return sum(h.get_result() for h in handles)


def main() -> None:
    url = os.environ.get("DBOS_SYSTEM_DATABASE_URL", "sqlite:///queue_fanout.sqlite")
    DBOS(DBOSConfig("queue_fanout", system_database_url=url))
    DBOS.launch()
    try:
        workflow_id = f"fanout-{uuid.uuid4().hex[:8]}"
        with SetWorkflowID(workflow_id):
            total = measure_all(WORDS)
        children = DBOS.list_workflows(queue_name="fanout")
        mine = [w for w in children if w.workflow_id.startswith(workflow_id + "-")]
        print(f"{workflow_id}: {len(WORDS)} words, {total} letters in all")
        print(
            f"{len(mine)} child workflows on queue 'fanout', at most {most_at_once(mine)} at once"
        )
    finally:
        DBOS.shutdown()


if __name__ == "__main__":
    main()
