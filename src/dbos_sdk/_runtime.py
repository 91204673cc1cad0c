"""The launched runtime: system database, worker threads, event loop, recovery, waiting."""

import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from dbos_sdk._config import DBOSConfig
from dbos_sdk._outcome import Outcome, Prepared, Running, ShutdownInterrupt
from dbos_sdk._registry import REGISTRY, PluginHook
from dbos_sdk._serialization import JSONSerializer, PickleSerializer, Serializer
from dbos_sdk._sysdb import SystemDatabase, now_ms, open_system_database

T = TypeVar("T")

logger = logging.getLogger("dbos_sdk")


_runtime: "Runtime | None" = None
"""The one runtime of this process (module state allowed by design: there is one)."""


def current_runtime() -> "Runtime | None":
    return _runtime


def set_runtime(rt: "Runtime | None") -> None:
    global _runtime
    _runtime = rt


class Runtime:
    """Everything that exists between DBOS.launch() and DBOS.shutdown()."""

    def __init__(self, config: DBOSConfig) -> None:
        self.config = config
        self.logger = logger
        self.launched = False
        self.shutting_down = False
        self._sysdb: SystemDatabase | None = None
        self.running: dict[str, Running] = {}
        self.running_lock = threading.Lock()
        self.queue_inflight: dict[str, int] = {}
        self.background_inflight = 0
        self._handoffs: dict[str, str | None] = {}
        """Workflows (and their queue) that a start found claimed here: restarted if that
        claim is abandoned instead of run (see :meth:`claim`)."""
        self._retries: list[tuple[str, str | None]] = []
        self._recorded: OrderedDict[str, Outcome] = OrderedDict()
        self._woken: set[str] | None = set()
        """Queues to dequeue from at the next wake; None: all of them."""
        self._serializers: dict[str, Serializer] = {
            s.name: s for s in (PickleSerializer(), JSONSerializer(), config.serializer)
        }
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._tasks: set[concurrent.futures.Future[Any]] = set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started_plugins: list[PluginHook] = []
        self._started_receivers: list[PluginHook] = []

    @property
    def sysdb(self) -> SystemDatabase:
        if self._sysdb is None:
            raise RuntimeError("the system database is not open")
        return self._sysdb

    def serializer_for(self, name: str) -> Serializer:
        return self._serializers.get(name, self.config.serializer)

    # --- lifecycle ---------------------------------------------------------------------

    def launch(self) -> None:
        """Launch order: system database ready (migrated), datasources started, recovery
        and then queues started, then receivers started in registration order. A failure stops
        what was started and propagates."""
        sysdb = open_system_database(self.config)
        try:
            sysdb.migrate()
        except BaseException:
            sysdb.close()
            raise
        self._sysdb = sysdb
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.max_executor_threads, thread_name_prefix="dbos-workflow"
        )
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._loop_thread = threading.Thread(
            target=loop.run_forever, name="dbos-event-loop", daemon=True
        )
        self._loop_thread.start()
        self.launched = True
        REGISTRY.launched = True
        try:
            from dbos_sdk._queue import queue_runner
            from dbos_sdk._workflow import recover

            for hook in REGISTRY.datasources:
                hook.start()
                self._started_plugins.append(hook)
            self._start_thread("dbos-watcher", self._watch)
            # Recovered queue workflows must hold their worker_concurrency slots before
            # the queue runner counts the free ones.
            recover(self)
            self._start_thread("dbos-queues", lambda: queue_runner(self))
            for hook in REGISTRY.receivers:
                hook.start()
                self._started_plugins.append(hook)
                self._started_receivers.append(hook)
            for hook in REGISTRY.receivers:
                if hook.announce is not None:
                    hook.announce()
        except BaseException:
            self.shutdown(workflow_timeout_s=0)
            raise

    def _start_thread(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def shutdown(self, workflow_timeout_s: float = 10.0) -> None:
        """Stop processing; unfinished workflows stay PENDING and are recovered later."""
        if self.shutting_down:
            return
        receivers = [h for h in self._started_plugins if h in self._started_receivers]
        datasources = [h for h in self._started_plugins if h not in receivers]
        self._stop_plugins(receivers)  # before workflow processing stops
        self.shutting_down = True
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=5)
        loop = self._loop
        if loop is not None:
            for fut in list(self._tasks):
                fut.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + workflow_timeout_s
        while self.running and time.monotonic() < deadline:
            time.sleep(0.01)
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(timeout=5)
            if not loop.is_running():
                loop.close()
        self._stop_plugins(datasources)
        self.launched = False
        REGISTRY.launched = False
        if self._sysdb is not None:
            self._sysdb.close()

    def _stop_plugins(self, hooks: list[PluginHook]) -> None:
        for hook in reversed(hooks):
            try:
                hook.stop()
            except Exception:
                self.logger.exception("Stopping %s failed", hook.name)

    def run_coroutine(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the runtime's event loop and wait for its result (for plugins'
        async start and stop hooks)."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # --- claims on in-process execution --------------------------------------------------

    def claim(
        self,
        workflow_id: str,
        deadline_ms: int | None,
        queue: str | None,
        *,
        hand_off: bool = False,
    ) -> "Running | Prepared":
        """Become this process's only executor of ``workflow_id``, or learn whom to wait on.

        With ``hand_off`` (a start of a PENDING row of this executor: dequeue, recovery),
        a claim held by a caller that then only waits (it found the row ENQUEUED or
        another executor's) does not strand the row: when that claim is released
        unexecuted, the start is retried (:meth:`take_retries`). Its queue slot stays
        reserved meanwhile, so worker_concurrency still holds.
        """
        with self.running_lock:
            entry = self.running.get(workflow_id)
            if entry is not None:
                if hand_off and workflow_id not in self._handoffs:
                    self._handoffs[workflow_id] = queue
                    if queue is not None:
                        self.queue_inflight[queue] = self.queue_inflight.get(queue, 0) + 1
                return Prepared("wait", entry=entry)
            entry = Running(
                workflow_id, concurrent.futures.Future(), threading.Event(), deadline_ms, queue
            )
            self.running[workflow_id] = entry
            if queue is not None:
                self.queue_inflight[queue] = self.queue_inflight.get(queue, 0) + 1
            return entry

    def release(self, entry: Running, outcome: Outcome | None) -> None:
        """End a claim (once; later calls do nothing); waiters get ``outcome`` (None: the
        execution was abandoned and the workflow is left for recovery)."""
        with self.running_lock:
            if self.running.get(entry.workflow_id) is not entry:
                return
            del self.running[entry.workflow_id]
            if entry.queue_name is not None:
                self.queue_inflight[entry.queue_name] -= 1
            retry = entry.workflow_id in self._handoffs
            if retry:
                queue = self._handoffs.pop(entry.workflow_id)
                if outcome is None and not self._stop.is_set():
                    self._retries.append((entry.workflow_id, queue))
                elif queue is not None:
                    self.queue_inflight[queue] -= 1
        if not entry.future.done():
            if outcome is None:
                entry.future.set_exception(ShutdownInterrupt(entry.workflow_id))
            elif outcome.error is not None:
                entry.future.set_exception(outcome.error)
            else:
                entry.future.set_result(outcome.value)
        if retry:
            self.wake_queues()
        elif entry.queue_name is not None:
            q = REGISTRY.queues.get(entry.queue_name)
            if q is not None and (q.concurrency is not None or q.worker_concurrency is not None):
                self.wake_queues(entry.queue_name)  # a slot of that queue is free

    RECORDED_OUTCOMES_KEPT = 10_000

    def remember_outcome(self, workflow_id: str, outcome: Outcome) -> None:
        """Keep the SUCCESS or ERROR outcome this process just recorded: it never changes,
        so a handle waiting on a workflow that finished here needs no database read."""
        with self.running_lock:
            self._recorded[workflow_id] = outcome
            if len(self._recorded) > self.RECORDED_OUTCOMES_KEPT:
                self._recorded.popitem(last=False)

    def recorded_outcome(self, workflow_id: str) -> Outcome | None:
        with self.running_lock:
            return self._recorded.get(workflow_id)

    def take_retries(self) -> list[tuple[str, str | None]]:
        """The handed-off starts to retry (workflow ID, queue), their reservations ended."""
        with self.running_lock:
            retries, self._retries = self._retries, []
            for _, queue in retries:
                if queue is not None:
                    self.queue_inflight[queue] -= 1
        return retries

    def wake_queues(self, queue: str | None = None) -> None:
        """Have the queue runner dequeue from ``queue`` now (None: from every queue)."""
        with self.running_lock:
            if queue is None:
                self._woken = None
            elif self._woken is not None:
                self._woken.add(queue)
        self._wake.set()

    def wait_for_wake(self, timeout: float) -> set[str] | None:
        """Wait until woken or ``timeout``; return the queues woken (None: every queue,
        also when a positive timeout passed: a poll for work other processes enqueued)."""
        woken = self._wake.wait(timeout)
        with self.running_lock:
            self._wake.clear()
            due, self._woken = self._woken, set()
        return due if woken or timeout <= 0 else None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- background execution --------------------------------------------------------------

    # --- background execution --------------------------------------------------------------

    def submit_async(self, coro: Coroutine[Any, Any, Outcome], abandon: Callable[[], None]) -> None:
        """Run a workflow coroutine on the runtime's event loop; ``abandon`` releases its
        claim if it is cancelled at shutdown before it could do so itself."""
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(_quiet(coro), self._loop)
        self._tasks.add(fut)

        def done(f: "concurrent.futures.Future[None]") -> None:
            self._tasks.discard(f)
            if f.cancelled():
                if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                    coro.close()  # never started: nothing else will close it
                abandon()

        fut.add_done_callback(done)

    def submit_sync(self, run: Callable[[], Outcome], abandon: Callable[[], None]) -> None:
        """Run a workflow function on a worker thread; ``abandon`` releases its claim if
        the pool is shut down before the function ran (the workflow is then recovered)."""
        assert self._pool is not None
        with self.running_lock:
            self.background_inflight += 1

        def job() -> None:
            try:
                run()
            except ShutdownInterrupt:
                pass
            except BaseException:
                self.logger.exception("a background workflow failed to record its outcome")
            finally:
                with self.running_lock:
                    self.background_inflight -= 1
                    was_full = self.background_inflight + 1 >= self.config.max_executor_threads
                if was_full:
                    self.wake_queues()  # a worker thread is free for any queue

        def cancelled(f: "concurrent.futures.Future[None]") -> None:
            if f.cancelled():
                with self.running_lock:
                    self.background_inflight -= 1
                abandon()

        try:
            self._pool.submit(contextvars.Context().run, job).add_done_callback(cancelled)
        except RuntimeError:  # shut down already
            with self.running_lock:
                self.background_inflight -= 1
            abandon()

    def find_entry(self, workflow_id: str) -> Running | None:
        with self.running_lock:
            return self.running.get(workflow_id)

    # --- cancellation and deadlines -------------------------------------------------------

    def _watch(self) -> None:
        """Apply cancellations made by other processes, and deadlines, to running workflows."""
        while not self._stop.wait(0.5):
            try:
                with self.running_lock:
                    entries = list(self.running.values())
                if not entries:
                    continue
                t = now_ms()
                for e in entries:
                    if (
                        e.deadline_ms is not None
                        and t >= e.deadline_ms
                        and not e.cancelled.is_set()
                    ):
                        self.sysdb.cancel_workflow(e.workflow_id)
                        e.cancelled.set()
                statuses = self.sysdb.get_statuses([e.workflow_id for e in entries])
                for e in entries:
                    if statuses.get(e.workflow_id) == "CANCELLED":
                        e.cancelled.set()
            except Exception:
                if not self._stop.is_set():
                    self.logger.exception("the cancellation watcher failed; retrying")

    def cancel_local(self, workflow_id: str) -> None:
        entry = self.find_entry(workflow_id)
        if entry is not None:
            entry.cancelled.set()


async def _quiet(coro: Coroutine[Any, Any, Outcome]) -> None:
    try:
        await coro
    except (ShutdownInterrupt, asyncio.CancelledError):
        pass
    except BaseException:
        logger.exception("a background workflow failed to record its outcome")
