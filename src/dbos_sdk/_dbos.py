"""DBOS: the one runtime of a process, and the static entry points users call."""

import asyncio
import contextvars
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, ClassVar, ParamSpec, TypeVar, overload

from typing_extensions import deprecated

from dbos_sdk import _decorators
from dbos_sdk._config import DBOSConfig
from dbos_sdk._context import authed, current_auth, current_step, current_workflow
from dbos_sdk._handles import (
    WorkflowHandle,
    WorkflowHandleAsync,
    get_status,
    start_in_background,
    status_from_row,
)
from dbos_sdk._queue import Queue
from dbos_sdk._receiver_api import ReceiverAPI
from dbos_sdk._registry import REGISTRY, StepOptions
from dbos_sdk._runtime import Runtime, current_runtime, set_runtime
from dbos_sdk._serialization import deserialize_value
from dbos_sdk._status import StepInfo, WorkflowStatus
from dbos_sdk._sysdb import WorkflowFilter
from dbos_sdk._workflow import WorkflowInvocation, registered_workflow, runtime_for
from dbos_sdk.errors import DBOSConfigurationError, DBOSNonExistentWorkflowError

P = ParamSpec("P")
R = TypeVar("R")

_lifecycle_lock = threading.Lock()


class _DBOSMeta(type):
    """Class-level properties: what the code running now can read about its context."""

    @property
    def workflow_id(cls) -> str | None:
        """The ID of the workflow this code runs in, or None outside a workflow."""
        ctx = current_workflow.get()
        return ctx.workflow_id if ctx is not None else None

    @property
    def step_id(cls) -> int | None:
        """The ID of the step (or transaction) whose function runs now, or None."""
        call = current_step.get()
        return call.step_id if call is not None else None

    @property
    def authenticated_user(cls) -> str | None:
        """The user the current workflow (or authed block) runs for."""
        auth = current_auth.get()
        if auth is not None:
            return auth.user
        ctx = current_workflow.get()
        return ctx.authenticated_user if ctx is not None else None

    @property
    def authenticated_roles(cls) -> tuple[str, ...] | None:
        """The roles of the authenticated user."""
        auth = current_auth.get()
        if auth is not None:
            return auth.roles
        ctx = current_workflow.get()
        return ctx.authenticated_roles if ctx is not None else None

    @property
    def assumed_role(cls) -> str | None:
        """The role that satisfied the current workflow's ``required_roles``."""
        ctx = current_workflow.get()
        return ctx.assumed_role if ctx is not None else None


class DBOS(ReceiverAPI, metaclass=_DBOSMeta):
    """The durable-execution runtime. Create one with ``DBOS(config)``, register functions,
    then ``DBOS.launch()``; ``DBOS.shutdown()`` stops it (and a new ``DBOS(config)`` may
    follow, as tests do)."""

    logger: ClassVar[logging.Logger] = logging.getLogger("dbos_sdk")

    config: DBOSConfig

    def __init__(self, config: DBOSConfig) -> None:
        if not isinstance(config, DBOSConfig):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise DBOSConfigurationError(
                f"DBOS(config) takes a DBOSConfig, not {type(config).__name__}."
            )
        with _lifecycle_lock:
            old = current_runtime()
            if old is not None and old.launched:
                raise DBOSConfigurationError(
                    "A DBOS runtime is already launched in this process; call "
                    "DBOS.shutdown() before creating another."
                )
            self.config = config
            set_runtime(Runtime(config))

    # --- lifecycle -----------------------------------------------------------------------

    @staticmethod
    def launch() -> None:
        """Open the system database, migrate it, start queues and recover pending workflows."""
        with _lifecycle_lock:
            rt = current_runtime()
            if rt is None:
                raise DBOSConfigurationError(
                    "DBOS.launch() needs a configuration: call DBOS(DBOSConfig(name=...)) first."
                )
            if rt.launched:
                return
            if rt.shutting_down:  # launched before and shut down: start afresh
                rt = Runtime(rt.config)
                set_runtime(rt)
            rt.launch()

    @staticmethod
    def shutdown(workflow_timeout_s: float = 10.0) -> None:
        """Stop the runtime. Idempotent. Workflows still running stop at their next step
        (waiting up to ``workflow_timeout_s``) and are recovered at the next launch."""
        with _lifecycle_lock:
            rt = current_runtime()
            if rt is not None and rt.launched:
                rt.shutdown(workflow_timeout_s)

    # --- decorators ----------------------------------------------------------------------

    @overload
    @staticmethod
    def workflow(func: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    @staticmethod
    def workflow(*, name: str | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    @staticmethod
    def workflow(
        func: Callable[P, R] | None = None, /, *, name: str | None = None
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """Make a function (sync or async, free or method) a durable workflow.

        Its signature is kept. ``name`` is what the workflow is recorded and recovered
        under (default: the function's qualified name); it must be unique in the process.
        """
        if func is not None:
            return _decorators.make_workflow(func, name)

        def deco(f: Callable[P, R]) -> Callable[P, R]:
            return _decorators.make_workflow(f, name)

        return deco

    @overload
    @staticmethod
    def step(func: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    @staticmethod
    def step(
        *,
        name: str | None = None,
        retries_allowed: bool = False,
        max_attempts: int = 3,
        interval_seconds: float = 1.0,
        backoff_rate: float = 2.0,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    @staticmethod
    def step(
        func: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        retries_allowed: bool = False,
        max_attempts: int = 3,
        interval_seconds: float = 1.0,
        backoff_rate: float = 2.0,
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """Make a function a checkpointed step: in a workflow, its output (or exception) is
        recorded before the workflow goes on, and replayed on recovery.

        With ``retries_allowed``, an exception is retried up to ``max_attempts`` times,
        waiting ``interval_seconds`` and then ``backoff_rate`` times longer each time;
        when every attempt fails, DBOSMaxStepRetriesExceededError is raised. A step
        interrupted by a crash runs again on recovery (at least once).
        """
        opts = StepOptions(retries_allowed, max_attempts, interval_seconds, backoff_rate)
        if func is not None:
            return _decorators.make_step(func, name, opts)

        def deco(f: Callable[P, R]) -> Callable[P, R]:
            return _decorators.make_step(f, name, opts)

        return deco

    @overload
    @staticmethod
    @deprecated("DBOS.required_roles takes a list of role names, e.g. ['admin'], not one string")
    def required_roles(roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    @overload
    @staticmethod
    def required_roles(roles: Sequence[str]) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    @staticmethod
    def required_roles(roles: Sequence[str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """The decorated workflow runs only for a user holding one of ``roles``; others get
        DBOSNotAuthorizedError. The role that matched is ``DBOS.assumed_role``."""
        return _decorators.required_roles(roles)

    # --- starting and inspecting workflows ---------------------------------------------

    @overload
    @staticmethod
    @deprecated("an async workflow started from sync code: use DBOS.start_workflow_async")
    def start_workflow(
        func: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]: ...

    @overload
    @staticmethod
    def start_workflow(
        func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]: ...

    @staticmethod
    def start_workflow(
        func: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[Any]:
        """Durably start a workflow and return at once with its handle.

        When this returns, the workflow is recorded: a crash from here on recovers it.
        """
        return WorkflowHandle(start_in_background(func, args, kwargs, "DBOS.start_workflow"))

    @staticmethod
    async def start_workflow_async(
        func: Callable[P, Coroutine[Any, Any, R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandleAsync[R]:
        """Durably start an async workflow on the running event loop; return its handle."""
        reg = registered_workflow(func, "DBOS.start_workflow_async")
        if not reg.is_async:
            wfid = start_in_background(func, args, kwargs, "DBOS.start_workflow_async")
            return WorkflowHandleAsync(wfid)
        rt = runtime_for(f"DBOS.start_workflow_async({reg.name})")
        from dbos_sdk._handles import _bind  # pyright: ignore[reportPrivateUsage]

        inv = WorkflowInvocation(rt, reg, _bind(func, args), kwargs)
        prepared = inv.prepare()
        if prepared.action == "execute":
            assert prepared.ctx is not None
            task = asyncio.get_running_loop().create_task(
                inv.run_async(prepared.ctx), context=contextvars.Context()
            )
            _local_tasks.add(task)
            task.add_done_callback(_local_tasks.discard)
        return WorkflowHandleAsync(inv.workflow_id)

    @staticmethod
    def get_queue(name: str) -> Queue | None:
        """The declared queue of that name, or None (receivers check their settings with it
        at launch)."""
        return REGISTRY.queues.get(name)

    @staticmethod
    def retrieve_workflow(workflow_id: str) -> WorkflowHandle[Any]:
        """A handle to an existing workflow; DBOSNonExistentWorkflowError if there is none."""
        rt = runtime_for("DBOS.retrieve_workflow")
        if rt.sysdb.get_workflow(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandle(workflow_id)

    @staticmethod
    def get_workflow_status(workflow_id: str) -> WorkflowStatus | None:
        """The workflow's status record, or None if no such workflow exists."""
        rt = runtime_for("DBOS.get_workflow_status")
        try:
            return get_status(rt, workflow_id)
        except DBOSNonExistentWorkflowError:
            return None

    @staticmethod
    def list_workflows(
        *,
        workflow_ids: Sequence[str] | None = None,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        queue_name: str | None = None,
        executor_id: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        limit: int | None = None,
        offset: int | None = None,
        sort_desc: bool = False,
        load_output: bool = True,
    ) -> list[WorkflowStatus]:
        """Workflows matching every given filter (creation time between start_time and
        end_time), oldest first unless ``sort_desc``."""
        rt = runtime_for("DBOS.list_workflows")
        statuses = [status] if isinstance(status, str) else status
        f = WorkflowFilter(
            workflow_ids=workflow_ids,
            status=statuses,
            name=name,
            queue_name=queue_name,
            executor_id=executor_id,
            start_time_ms=int(start_time.timestamp() * 1000) if start_time else None,
            end_time_ms=int(end_time.timestamp() * 1000) if end_time else None,
            limit=limit,
            offset=offset,
            newest_first=sort_desc,
        )
        return [status_from_row(rt, r, load=load_output) for r in rt.sysdb.list_workflows(f)]

    @staticmethod
    def get_workflow_steps(workflow_id: str) -> list[StepInfo]:
        """The recorded steps of a workflow, in order."""
        rt = runtime_for("DBOS.get_workflow_steps")
        out: list[StepInfo] = []
        for s in rt.sysdb.get_steps(workflow_id):
            ser = rt.serializer_for(s.serialization)
            what = f"step {s.function_id} of {workflow_id!r}"
            out.append(
                StepInfo(
                    function_id=s.function_id,
                    function_name=s.function_name,
                    output=deserialize_value(ser, s.output, what) if s.output is not None else None,
                    error=deserialize_value(ser, s.error, what) if s.error is not None else None,
                    child_workflow_id=s.child_workflow_id,
                    started_at=s.started_at,
                    completed_at=s.completed_at,
                )
            )
        return out

    @staticmethod
    def cancel_workflow(workflow_id: str) -> None:
        """Cancel a PENDING or ENQUEUED workflow: it stops before its next step."""
        rt = runtime_for("DBOS.cancel_workflow")
        if rt.sysdb.cancel_workflow(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        rt.cancel_local(workflow_id)

    @staticmethod
    def resume_workflow(workflow_id: str) -> WorkflowHandle[Any]:
        """Run a cancelled (or recovery-exhausted) workflow again from its last completed
        step, with no timeout. A finished workflow is left as it is."""
        rt = runtime_for("DBOS.resume_workflow")
        if rt.sysdb.resume_workflow(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        rt.wake_queues()
        return WorkflowHandle(workflow_id)

    @staticmethod
    def fork_workflow(
        workflow_id: str,
        start_step: int,
        *,
        new_workflow_id: str | None = None,
        application_version: str | None = None,
    ) -> WorkflowHandle[Any]:
        """Start a copy of a workflow that replays its steps before ``start_step`` (step IDs
        start at 1) and runs the rest anew; returns the new workflow's handle."""
        rt = runtime_for("DBOS.fork_workflow")
        if start_step < 1:
            raise DBOSConfigurationError(
                f"DBOS.fork_workflow(start_step={start_step}): step IDs start at 1."
            )
        new_id = new_workflow_id or str(uuid.uuid4())
        if not rt.sysdb.fork_workflow(workflow_id, start_step, new_id, application_version):
            raise DBOSNonExistentWorkflowError(workflow_id)
        rt.wake_queues()
        return WorkflowHandle(new_id)

    # --- authentication ------------------------------------------------------------------

    @staticmethod
    def with_authed_context(user: str | None, roles: Sequence[str], callback: Callable[[], R]) -> R:
        """Call ``callback()`` as ``user`` holding ``roles``: workflows it starts record them
        and check ``required_roles`` against them."""
        with authed(user, roles):
            return callback()

    @staticmethod
    async def with_authed_context_async(
        user: str | None, roles: Sequence[str], callback: Callable[[], Awaitable[R]]
    ) -> R:
        """Async twin of :meth:`with_authed_context`."""
        with authed(user, roles):
            return await callback()


_local_tasks: set["asyncio.Task[Any]"] = set()
"""Strong references to workflows started with start_workflow_async, so none is collected."""
