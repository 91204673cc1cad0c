"""Hello, durable workflow: two checkpointed steps on SQLite, no server needed.

    python examples/hello_workflow.py        # writes hello_workflow.sqlite here
    dbos-sdk workflow steps hello-1 --db-url sqlite:///hello_workflow.sqlite

Run it twice: the second time, workflow ID ``hello-1`` already has a recorded result, so
DBOS returns it without running either step again. Set DBOS_SYSTEM_DATABASE_URL to use
another database (a postgresql:// URL works too).
"""

import os

from dbos_sdk import DBOS, DBOSConfig, SetWorkflowID

WORKFLOW_ID = "hello-1"


@DBOS.step()
def make_greeting(name: str) -> str:
    print(f"  running step make_greeting({name!r})")
    return f"Hello, {name}"


@DBOS.step()
def add_punctuation(text: str) -> str:
    print(f"  running step add_punctuation({text!r})")
    return text + "!"


@DBOS.workflow()
def hello(name: str) -> str:
    """Each step's output is checkpointed before the next step starts."""
    return add_punctuation(make_greeting(name))


def main() -> None:
    url = os.environ.get("DBOS_SYSTEM_DATABASE_URL", "sqlite:///hello_workflow.sqlite")
    DBOS(DBOSConfig("hello_workflow", system_database_url=url))
    DBOS.launch()
    try:
        with SetWorkflowID(WORKFLOW_ID):
            result = hello("world")
        status = DBOS.retrieve_workflow(WORKFLOW_ID).get_status()
        steps = DBOS.get_workflow_steps(WORKFLOW_ID)
        print(f"{WORKFLOW_ID}: {result!r} ({status.status}, {len(steps)} steps recorded)")
    finally:
        DBOS.shutdown()


if __name__ == "__main__":
    main()
