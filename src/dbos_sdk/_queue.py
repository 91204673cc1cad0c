"""Queues: durable, rate-limited, concurrency-limited sets of workflows to run."""

import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

import attrs
from typing_extensions import deprecated

from dbos_sdk._handles import WorkflowHandle, WorkflowHandleAsync, enqueue_workflow
from dbos_sdk._registry import REGISTRY
from dbos_sdk._runtime import Runtime
from dbos_sdk._sysdb import INTERNAL_QUEUE, QueueLimits
from dbos_sdk._workflow import start_row
from dbos_sdk.errors import DBOSQueueError

P = ParamSpec("P")
R = TypeVar("R")


@attrs.frozen(kw_only=True)
class QueueRateLimit:
    """At most ``limit`` workflows of the queue start in any ``period`` seconds."""

    limit: int
    period: float


class Queue:
    """A named queue of workflows, drained by every launched executor.

    ``concurrency`` bounds the workflows of this queue running at once across all
    executors; ``worker_concurrency`` bounds them per executor; ``limiter`` bounds how many
    start per period; with ``priority_enabled``, lower ``priority`` values start first.
    Declare queues at import time, before DBOS.launch().
    """

    name: str
    concurrency: int | None
    worker_concurrency: int | None
    limiter: QueueRateLimit | None
    priority_enabled: bool

    def __init__(
        self,
        name: str,
        concurrency: int | None = None,
        worker_concurrency: int | None = None,
        limiter: QueueRateLimit | None = None,
        priority_enabled: bool = False,
    ) -> None:
        for setting, value in (
            ("concurrency", concurrency),
            ("worker_concurrency", worker_concurrency),
        ):
            if value is not None and value < 1:
                raise DBOSQueueError(
                    f"Queue({name!r}, {setting}={value}): use a positive number or None."
                )
        if (
            concurrency is not None
            and worker_concurrency is not None
            and worker_concurrency > concurrency
        ):
            raise DBOSQueueError(
                f"Queue({name!r}): worker_concurrency={worker_concurrency} exceeds "
                f"concurrency={concurrency}; lower it to at most {concurrency}."
            )
        if limiter is not None and (limiter.limit < 1 or limiter.period <= 0):
            raise DBOSQueueError(
                f"Queue({name!r}, limiter={limiter}): limit must be >= 1 and period > 0 seconds."
            )
        self.name = name
        self.concurrency = concurrency
        self.worker_concurrency = worker_concurrency
        self.limiter = limiter
        self.priority_enabled = priority_enabled
        with REGISTRY.lock:
            REGISTRY.check_open(f"queue {name!r}")
            REGISTRY.queues[name] = self

    @overload
    @deprecated("an async workflow enqueued from sync code: use Queue.enqueue_async")
    def enqueue(
        self, func: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]: ...

    @overload
    def enqueue(
        self, func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]: ...

    def enqueue(
        self, func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[Any]:
        """Durably enqueue ``func(*args, **kwargs)``; return a handle to its result."""
        return enqueue_workflow(self.name, func, args, kwargs)

    async def enqueue_async(
        self, func: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]:
        """Enqueue an async workflow from async code; return an async handle."""
        handle = enqueue_workflow(self.name, func, args, kwargs)
        return WorkflowHandleAsync(handle.workflow_id)


_BATCH = 100
_GATHER_S = 0.005
"""After a dequeue that found fewer rows than it could take, the queue is dequeued again no
sooner than this: a burst of enqueues starts in a few batches (one commit each) rather
than one by one, for at most this much more start latency within a burst."""


def queue_runner(rt: Runtime) -> None:
    """Dequeue and start workflows until the runtime stops."""
    internal = _internal_queue()
    poll = rt.config.queue_poll_interval_s
    own = rt.config.executor_id
    names = [reg.name for reg in REGISTRY.workflows()]  # fixed while launched
    due: set[str] | None = None  # the queues to dequeue from; None: all
    not_before: dict[str, float] = {}  # queue -> when its next partial dequeue may run
    while not rt.stopping:
        more: set[str] = set()  # queues that filled a batch: dequeue again at once
        held: set[str] = set()  # queues woken within _GATHER_S of their last partial batch
        limited = False
        for workflow_id, queue_name in rt.take_retries():
            try:
                row = rt.sysdb.get_workflow(workflow_id)
            except Exception:
                if rt.stopping:
                    return
                rt.logger.exception(
                    "restarting workflow %r failed; the next launch recovers it", workflow_id
                )
                continue
            if row is not None and row.status == "PENDING" and row.executor_id == own:
                start_row(rt, row, queue_name)
        for q in [*REGISTRY.queues.values(), internal]:
            with rt.running_lock:
                inflight = rt.queue_inflight.get(q.name, 0)
                free_threads = rt.config.max_executor_threads - rt.background_inflight
            local_free = free_threads
            if q.worker_concurrency is not None:
                local_free = min(local_free, q.worker_concurrency - inflight)
            if q.limiter is not None:
                limited = True
            if due is not None and q.name not in due:
                continue
            if time.monotonic() < not_before.get(q.name, 0.0):
                held.add(q.name)
                continue
            try:
                rows = rt.sysdb.dequeue(_limits(q, local_free), own, _BATCH, names)
            except Exception:
                if rt.stopping:
                    return
                rt.logger.exception("dequeue from %r failed; retrying", q.name)
                rows = []
            if q.priority_enabled:
                rows.sort(key=lambda r: (r.priority, r.created_at))
            else:
                rows.sort(key=lambda r: r.created_at)
            try:  # one read for the batch, not one per workflow
                steps = rt.sysdb.get_steps_of([r.workflow_id for r in rows]) if rows else {}
            except Exception:
                steps = {}  # each start reads its own
            for row in rows:
                start_row(rt, row, q.name, steps.get(row.workflow_id))
            if rows and len(rows) >= min(_BATCH, local_free):
                more.add(q.name)
            elif rows:
                not_before[q.name] = time.monotonic() + _GATHER_S
        if rt.stopping:
            return
        poll_timeout = 0.0 if more else (min(poll, 0.05) if limited else poll)
        timeout = poll_timeout
        if held:
            timeout = min(timeout, max(0.0, min(not_before[n] for n in held) - time.monotonic()))
        due = rt.wait_for_wake(timeout)
        if due is None and timeout < poll_timeout:
            due = set()  # the gather timer ran out, not the poll interval
        if due is not None:
            due |= more | held


def _limits(q: Queue, local_free: int | None) -> QueueLimits:
    lim = q.limiter
    return QueueLimits(
        name=q.name,
        concurrency=q.concurrency,
        local_free=local_free,
        limit=lim.limit if lim else None,
        period_ms=int(lim.period * 1000) if lim else None,
        priority_enabled=q.priority_enabled,
    )


def _internal_queue() -> Queue:
    q = Queue.__new__(Queue)
    q.name = INTERNAL_QUEUE
    q.concurrency = None
    q.worker_concurrency = None
    q.limiter = None
    q.priority_enabled = False
    return q
