"""Typetests: starting workflows, handles, queues and per-start options.

``DBOS.start_workflow`` / ``Queue.enqueue`` check the arguments against the workflow's
signature and return ``WorkflowHandle[R]``; the ``*_async`` twins return
``WorkflowHandleAsync[R]`` with the *awaited* result type; starting an async workflow
from the sync API is flagged deprecated (TYPING.md §2.2). Checked, never run.
"""

from datetime import UTC, datetime
from typing import Any, TypeVar, assert_type

from dbos_sdk import (
    DBOS,
    DBOSConfiguredInstance,
    Queue,
    QueueRateLimit,
    SetWorkflowID,
    SetWorkflowOptions,
    StepInfo,
    WorkflowHandle,
    WorkflowHandleAsync,
    WorkflowStatus,
)

T = TypeVar("T")


@DBOS.workflow
def wf(x: int, label: str = "") -> float:
    return float(x)


@DBOS.workflow(name="kw.only")
def wf_kw(*, key: str) -> list[str]:
    return [key]


@DBOS.workflow
async def awf(x: int) -> list[int]:
    return [x]


class Svc(DBOSConfiguredInstance):
    @DBOS.workflow
    def run(self, n: int) -> str:
        return str(n)

    @DBOS.workflow
    async def arun(self, n: int) -> bytes:
        return bytes(n)


queue = Queue(
    "q", concurrency=4, worker_concurrency=2, limiter=QueueRateLimit(limit=10, period=1.0)
)
prio_queue = Queue("prio", priority_enabled=True)


# --- DBOS.start_workflow -> WorkflowHandle[R] -------------------------------------------


def start_sync() -> None:
    h = DBOS.start_workflow(wf, 1)
    assert_type(h, WorkflowHandle[float])
    assert_type(h.get_result(), float)
    assert_type(h.get_result(timeout=5.0), float)
    assert_type(h.workflow_id, str)
    assert_type(h.get_status(), WorkflowStatus)
    assert_type(DBOS.start_workflow(wf, 1, label="l").get_result(), float)
    assert_type(DBOS.start_workflow(wf, x=1), WorkflowHandle[float])
    assert_type(DBOS.start_workflow(wf_kw, key="k").get_result(), list[str])
    assert_type(DBOS.start_workflow(Svc("a").run, 3).get_result(), str)

    # start_workflow is overloaded (deprecated async overload first), so mypy reports most
    # misuse as call-overload; for a bad keyword it reports against the *first* overload
    # ("expected Callable[[int, str], Coroutine[Any, Any, Never]]"), hence arg-type too.
    DBOS.start_workflow(wf, "1")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    DBOS.start_workflow(wf)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    DBOS.start_workflow(wf, 1, "l", 3)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    DBOS.start_workflow(wf, 1, lbl="l")  # type: ignore[arg-type, call-arg]  # pyright: ignore[reportCallIssue]
    DBOS.start_workflow(wf_kw, "k")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    DBOS.start_workflow(Svc("a").run, "3")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    # The function is positional-only, so it cannot collide with a workflow's own "func".
    DBOS.start_workflow(func=wf)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    DBOS.start_workflow(1)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    h.get_result(5.0)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    wrong: WorkflowHandle[str] = DBOS.start_workflow(wf, 1)  # type: ignore[call-overload]  # pyright: ignore[reportAssignmentType]
    del wrong


@DBOS.workflow
def wf_generic(x: T) -> list[T]:
    return [x]


def start_generic() -> None:
    assert_type(DBOS.start_workflow(wf_generic, 1).get_result(), list[int])
    assert_type(queue.enqueue(wf_generic, "s"), WorkflowHandle[list[str]])


def start_async_from_sync_is_deprecated() -> None:
    # Still typed with the awaited result, but flagged: use start_workflow_async.
    h = DBOS.start_workflow(awf, 1)  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]
    assert_type(h, WorkflowHandle[list[int]])
    DBOS.start_workflow(Svc("a").arun, 1)  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]


# --- DBOS.start_workflow_async -> WorkflowHandleAsync[R] ----------------------------------


async def start_async() -> None:
    ah = await DBOS.start_workflow_async(awf, 1)
    assert_type(ah, WorkflowHandleAsync[list[int]])
    assert_type(await ah.get_result(), list[int])
    assert_type(await ah.get_result(timeout=1.0), list[int])
    assert_type(await ah.get_status(), WorkflowStatus)
    assert_type(ah.workflow_id, str)
    assert_type(await (await DBOS.start_workflow_async(Svc("a").arun, 2)).get_result(), bytes)

    await DBOS.start_workflow_async(awf, "1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await DBOS.start_workflow_async(awf)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    # A sync workflow is not accepted by the async starter.
    await DBOS.start_workflow_async(wf, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# --- Queue.enqueue / enqueue_async -------------------------------------------------------


def enqueue_sync() -> None:
    h = queue.enqueue(wf, 1, label="l")
    assert_type(h, WorkflowHandle[float])
    assert_type(h.get_result(), float)
    assert_type(queue.enqueue(wf_kw, key="k").get_result(), list[str])
    assert_type(queue.enqueue(Svc("a").run, 1), WorkflowHandle[str])

    queue.enqueue(wf, "1")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
    queue.enqueue(wf)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    queue.enqueue(wf, 1, nope=2)  # type: ignore[arg-type, call-arg]  # pyright: ignore[reportCallIssue]
    queue.enqueue(1)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]


def enqueue_async_from_sync_is_deprecated() -> None:
    h = queue.enqueue(awf, 1)  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]
    assert_type(h, WorkflowHandle[list[int]])
    assert_type(queue.enqueue(Svc("a").arun, 1).get_result(), bytes)  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]


async def enqueue_async() -> None:
    ah = await queue.enqueue_async(awf, 1)
    assert_type(ah, WorkflowHandleAsync[list[int]])
    assert_type(await ah.get_result(), list[int])
    assert_type(await (await queue.enqueue_async(Svc("a").arun, 1)).get_result(), bytes)

    await queue.enqueue_async(awf, "1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await queue.enqueue_async(wf, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def queue_construction() -> None:
    assert_type(queue.name, str)
    assert_type(queue.concurrency, int | None)
    assert_type(queue.limiter, QueueRateLimit | None)

    Queue(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Queue("q", concurrency="4")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Queue("q", limiter=(10, 1.0))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Queue("q", rate=3)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    QueueRateLimit(10, 1.0)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    QueueRateLimit(limit=10)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    QueueRateLimit(limit=10, period=1.0).limit = 5  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]


# --- handle variance: R is covariant ------------------------------------------------


def handle_variance(h: WorkflowHandle[bool], ah: WorkflowHandleAsync[bool]) -> None:
    widened: WorkflowHandle[int] = h
    awidened: WorkflowHandleAsync[object] = ah
    del widened, awidened

    narrowed: WorkflowHandle[bool] = WorkflowHandle[int]("id")  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    anarrowed: WorkflowHandleAsync[bool] = WorkflowHandleAsync[int]("id")  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    del narrowed, anarrowed
    h.workflow_id = 1  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]


# --- retrieving and managing workflows ------------------------------------------------


def management() -> None:
    r = DBOS.retrieve_workflow("id")
    assert_type(r, WorkflowHandle[Any])
    assert_type(r.get_result(), Any)
    assert_type(DBOS.get_workflow_status("id"), WorkflowStatus | None)
    assert_type(DBOS.list_workflows(status="SUCCESS", limit=10), list[WorkflowStatus])
    assert_type(
        DBOS.list_workflows(status=["PENDING", "ENQUEUED"], sort_desc=True), list[WorkflowStatus]
    )
    assert_type(DBOS.get_workflow_steps("id"), list[StepInfo])
    assert_type(DBOS.cancel_workflow("id"), None)
    assert_type(DBOS.resume_workflow("id"), WorkflowHandle[Any])
    assert_type(DBOS.fork_workflow("id", 2, new_workflow_id="id2"), WorkflowHandle[Any])

    DBOS.retrieve_workflow(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    DBOS.list_workflows("id")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    DBOS.list_workflows(limit="10")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    DBOS.fork_workflow("id", "2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    DBOS.fork_workflow("id", 2, "id2")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


# --- SetWorkflowID / SetWorkflowOptions ---------------------------------------------


def options() -> None:
    deadline = datetime.now(UTC)
    with SetWorkflowOptions(workflow_id="id", queue="q", timeout=1.5, priority=1) as o:
        assert_type(o, SetWorkflowOptions)
        assert_type(wf(1), float)
    with SetWorkflowOptions(deadline=deadline):
        pass
    with SetWorkflowOptions(timeout=3):  # an int is a float
        pass
    with SetWorkflowID("id") as s:
        assert_type(s, SetWorkflowID)
        assert_type(DBOS.start_workflow(wf, 1), WorkflowHandle[float])

    SetWorkflowOptions("id")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    SetWorkflowOptions(timeout="5")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    SetWorkflowOptions(deadline=5.0)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    SetWorkflowOptions(queue=prio_queue)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    SetWorkflowOptions(priority=1.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    SetWorkflowOptions(workflow_ID="id")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    SetWorkflowID(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    SetWorkflowID()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    SetWorkflowID("id", queue="q")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
