"""How a workflow invocation is prepared, run, finished, resumed and waited for.

Preparing (claiming the ID in this process and writing the row) and finishing (recording
the outcome) are plain functions shared by the sync and async paths; only the call of the
workflow's body differs between :meth:`WorkflowInvocation.run_sync` and ``run_async``.
"""

import asyncio
import concurrent.futures
import time
import uuid
from typing import Any

from dbos_sdk import _tracing
from dbos_sdk._context import (
    WorkflowContext,
    current_auth,
    current_step,
    current_workflow,
    take_start_options,
)
from dbos_sdk._outcome import Outcome, Prepared, Running, ShutdownInterrupt, call_async, call_sync
from dbos_sdk._registry import REGISTRY, RegisteredFunction, registration_of
from dbos_sdk._runtime import Runtime, current_runtime
from dbos_sdk._serialization import deserialize_value, serialize_error, serialize_value
from dbos_sdk._sysdb import TERMINAL_STATUSES, StepRow, WorkflowRow, now_ms
from dbos_sdk.errors import (
    DBOSConflictingWorkflowError,
    DBOSError,
    DBOSMaxRecoveryAttemptsExceededError,
    DBOSNonDeterministicError,
    DBOSNonExistentWorkflowError,
    DBOSNotAuthorizedError,
    DBOSNotLaunchedError,
    DBOSNotRegisteredError,
    DBOSQueueError,
    DBOSWorkflowCancelledError,
)


def runtime_for(what: str) -> Runtime:
    rt = current_runtime()
    if rt is None or not rt.launched:
        raise DBOSNotLaunchedError(
            f"{what} was called before DBOS.launch(): create DBOS(config) and call "
            "DBOS.launch() first."
        )
    return rt


def outcome_from_row(rt: Runtime, row: WorkflowRow) -> Outcome:
    """The outcome of a finished workflow, as recorded."""
    if row.status == "SUCCESS":
        what = f"the output of workflow {row.workflow_id!r}"
        return Outcome(value=load_value(rt, row.output, row.serialization, what))
    if row.status == "ERROR":
        what = f"the error of workflow {row.workflow_id!r}"
        return Outcome(error=load_value(rt, row.error, row.serialization, what))
    if row.status == "CANCELLED":
        return Outcome(error=DBOSWorkflowCancelledError(row.workflow_id))
    return Outcome(
        error=DBOSMaxRecoveryAttemptsExceededError(
            f"Workflow {row.workflow_id!r} was recovered more than max_recovery_attempts "
            "times without finishing; it is no longer retried. Fix the cause, then call "
            "DBOS.resume_workflow() on it."
        )
    )


def load_value(rt: Runtime, text: str | None, fmt: str, what: str) -> Any:
    if text is None:
        return None
    return deserialize_value(rt.serializer_for(fmt), text, what)


def load_inputs(rt: Runtime, row: WorkflowRow) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if row.inputs is None:
        return (), {}
    args, kwargs = load_value(
        rt, row.inputs, row.serialization, f"the inputs of {row.workflow_id!r}"
    )
    if row.config_name is not None and row.class_name is not None:
        instance = REGISTRY.instances.get((row.class_name, row.config_name))
        if instance is None:
            raise DBOSConflictingWorkflowError(
                f"Workflow {row.workflow_id!r} runs on instance {row.class_name}"
                f"({row.config_name!r}), which this process has not configured; create that "
                "instance before DBOS.launch()."
            )
        args = (instance, *args)
    return tuple(args), dict(kwargs)


class WorkflowInvocation:
    """One start of a workflow: either a new call or a resumption of a recorded row."""

    def __init__(
        self,
        rt: Runtime,
        reg: RegisteredFunction,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.rt = rt
        self.reg = reg
        self.args = args
        self.kwargs = kwargs
        self.entry: Running | None = None
        self.workflow_id = ""

    # --- preparing -------------------------------------------------------------------

    def prepare(self, *, enqueue_on: str | None = None) -> "Prepared":
        """Write the workflow's row (or find it) and decide who runs it."""
        rt = self.rt
        reg = self.reg
        parent = current_workflow.get()
        if parent is not None and current_step.get() is not None:
            parent = None  # a workflow started inside a step is a top-level workflow
        opts = take_start_options()
        queue = enqueue_on or (opts.queue if opts else None)
        if queue is not None and queue not in REGISTRY.queues:
            raise DBOSQueueError(
                f"Workflow {reg.name!r} was enqueued on {queue!r}, which is not a declared "
                "queue; create Queue(name) at import time, before DBOS.launch()."
            )
        auth = current_auth.get()
        user = auth.user if auth else (parent.authenticated_user if parent else None)
        roles = auth.roles if auth else (parent.authenticated_roles if parent else None)
        assumed = _check_roles(reg, roles)

        child_fid = parent.take_step_id() if parent is not None else None
        recorded_child = recorded_step(parent, child_fid, reg.name)
        if recorded_child is not None and recorded_child.child_workflow_id is not None:
            wfid = recorded_child.child_workflow_id
        elif opts is not None and opts.workflow_id is not None:
            wfid = opts.workflow_id
        elif parent is not None:
            wfid = f"{parent.workflow_id}-{child_fid}"
        else:
            wfid = str(uuid.uuid4())
        self.workflow_id = wfid

        args = self.args
        class_name = config_name = None
        instance_ref = _instance_name(args[0]) if args else None
        if instance_ref is not None:
            class_name, config_name = instance_ref
            args = args[1:]
        ser = rt.config.serializer
        inputs = serialize_value(
            ser, (args, self.kwargs), f"the arguments of workflow {reg.name!r}"
        )

        t = now_ms()
        timeout_ms = int(opts.timeout_s * 1000) if opts and opts.timeout_s is not None else None
        deadline_ms = int(opts.deadline.timestamp() * 1000) if opts and opts.deadline else None
        if deadline_ms is None and timeout_ms is not None and queue is None:
            deadline_ms = t + timeout_ms
        if parent is not None and parent.deadline_ms is not None:
            deadline_ms = min(deadline_ms or parent.deadline_ms, parent.deadline_ms)
        row = WorkflowRow(
            workflow_id=wfid,
            status="ENQUEUED" if queue else "PENDING",
            name=reg.name,
            class_name=class_name,
            config_name=config_name,
            inputs=inputs,
            output=None,
            error=None,
            serialization=ser.name,
            executor_id=None if queue else rt.config.executor_id,
            application_version=rt.config.application_version,
            queue_name=queue,
            priority=(opts.priority or 0) if opts else 0,
            authenticated_user=user,
            assumed_role=assumed,
            authenticated_roles=list(roles) if roles is not None else None,
            created_at=t,
            updated_at=t,
            started_at=None if queue else t,
            completed_at=None,
            timeout_ms=timeout_ms,
            deadline_epoch_ms=deadline_ms,
            recovery_attempts=0,
            forked_from=None,
        )
        if queue is None:
            claimed = rt.claim(wfid, deadline_ms, None)
            if isinstance(claimed, Prepared):
                return claimed
            self.entry = claimed
        try:
            existing = rt.sysdb.insert_workflow(row)
            if parent is not None and child_fid is not None and recorded_child is None:
                rt.sysdb.record_step(
                    parent.workflow_id,
                    StepRow(child_fid, reg.name, None, None, wfid, ser.name, t, t),
                )
        except BaseException:
            self._release(None)
            raise
        if queue is not None:
            if existing is not None:
                self._check_same_workflow(existing)  # else: enqueued (or ran) already
            rt.wake_queues(queue)
            return Prepared("enqueued")
        if existing is None:
            return Prepared("execute", self._context(row, None))
        return self._adopt(existing)

    def _check_same_workflow(self, existing: WorkflowRow) -> None:
        if existing.name != self.reg.name:
            self._release(None)
            raise DBOSConflictingWorkflowError(
                f"Workflow ID {existing.workflow_id!r} belongs to workflow {existing.name!r}, "
                f"not {self.reg.name!r}; use another workflow ID."
            )

    def _adopt(self, existing: WorkflowRow) -> "Prepared":
        """Decide what a start finds when the workflow ID already exists."""
        self._check_same_workflow(existing)
        if existing.status in TERMINAL_STATUSES:
            outcome = outcome_from_row(self.rt, existing)
            self._release(outcome)
            return Prepared("done", outcome=outcome)
        if existing.status == "PENDING" and existing.executor_id == self.rt.config.executor_id:
            return self.resume(existing)
        # Another executor runs it (or will recover it): wait for the recorded outcome.
        self._release(None)
        return Prepared("wait")

    def resume(self, row: WorkflowRow, steps: list[StepRow] | None = None) -> "Prepared":
        """Run a recorded PENDING workflow of this executor (after the claim is held);
        ``steps``: its recorded steps, if the caller has read them already."""
        row_deadline: int | None
        if row.deadline_epoch_ms is None and row.timeout_ms is not None:
            row_deadline = (row.started_at or now_ms()) + row.timeout_ms
        else:
            row_deadline = row.deadline_epoch_ms
        if self.entry is not None:
            self.entry.deadline_ms = row_deadline
        if steps is None:
            steps = self.rt.sysdb.get_steps(row.workflow_id)
        return Prepared("execute", self._context(row, {s.function_id: s for s in steps}))

    def _context(self, row: WorkflowRow, recorded: dict[int, StepRow] | None) -> WorkflowContext:
        assert self.entry is not None
        deadline = self.entry.deadline_ms
        if deadline is None and row.timeout_ms is not None:
            deadline = (row.started_at or now_ms()) + row.timeout_ms
            self.entry.deadline_ms = deadline
        roles = row.authenticated_roles
        return WorkflowContext(
            workflow_id=row.workflow_id,
            name=row.name,
            recorded=recorded,
            cancelled=self.entry.cancelled,
            deadline_ms=deadline,
            authenticated_user=row.authenticated_user,
            authenticated_roles=tuple(roles) if roles is not None else None,
            assumed_role=row.assumed_role,
        )

    def _release(self, outcome: Outcome | None) -> None:
        if self.entry is not None:
            self.rt.release(self.entry, outcome)
            self.entry = None

    # --- executing ---------------------------------------------------------------------

    def run_sync(self, ctx: WorkflowContext) -> Outcome:
        token = current_workflow.set(ctx)
        try:
            with _tracing.span(self.reg.name, _wf_attrs(ctx)) as sp:
                outcome = call_sync(self.reg.func, self.args, self.kwargs)
                sp.record(outcome.error)
        except BaseException:
            self._release(None)
            raise
        finally:
            current_workflow.reset(token)
        return self.finish(ctx, outcome)

    async def run_async(self, ctx: WorkflowContext) -> Outcome:
        token = current_workflow.set(ctx)
        try:
            with _tracing.span(self.reg.name, _wf_attrs(ctx)) as sp:
                outcome = await call_async(self.reg.func, self.args, self.kwargs)
                sp.record(outcome.error)
        except BaseException:
            self._release(None)
            raise
        finally:
            current_workflow.reset(token)
        return self.finish(ctx, outcome)

    def finish(self, ctx: WorkflowContext, outcome: Outcome) -> Outcome:
        """Record the outcome (unless the workflow was cancelled) and wake the waiters."""
        rt = self.rt
        if rt.shutting_down and outcome.error is not None:
            # An error while the runtime shuts down (a closed system database, a runtime
            # gone) is the shutdown interrupting the workflow, not its outcome: leave it
            # PENDING; recovery replays its checkpoints and reaches its real outcome.
            self._release(None)
            raise ShutdownInterrupt(ctx.workflow_id)
        ser = rt.config.serializer
        try:
            err = outcome.error
            if isinstance(err, DBOSWorkflowCancelledError) and err.workflow_id == ctx.workflow_id:
                rt.sysdb.cancel_workflow(ctx.workflow_id)
            else:
                output: str | None = None
                if outcome.error is None:
                    try:
                        output = serialize_value(
                            ser, outcome.value, f"the output of workflow {self.reg.name!r}"
                        )
                    except DBOSError as exc:
                        outcome = Outcome(error=exc)
                if outcome.error is None:
                    ok = rt.sysdb.finish_workflow(ctx.workflow_id, "SUCCESS", output, None)
                else:
                    text = serialize_error(ser, outcome.error)
                    ok = rt.sysdb.finish_workflow(ctx.workflow_id, "ERROR", None, text)
                if ok:
                    rt.remember_outcome(ctx.workflow_id, outcome)
                else:
                    outcome = Outcome(error=DBOSWorkflowCancelledError(ctx.workflow_id))
        except BaseException as exc:
            self._release(Outcome(error=exc))
            raise
        self._release(outcome)
        return outcome


def _wf_attrs(ctx: WorkflowContext) -> dict[str, Any]:
    return {"dbos.workflow_id": ctx.workflow_id, "dbos.kind": "workflow"}


def _instance_name(first: object) -> tuple[str, str] | None:
    from dbos_sdk._instances import DBOSConfiguredInstance

    if isinstance(first, DBOSConfiguredInstance):
        return type(first).__qualname__, first.config_name
    return None


def _check_roles(reg: RegisteredFunction, roles: tuple[str, ...] | None) -> str | None:
    """Enforce ``required_roles``; return the role the workflow assumes."""
    if reg.required_roles is None:
        return None
    for role in roles or ():
        if role in reg.required_roles:
            return role
    raise DBOSNotAuthorizedError(
        f"Function {reg.name!r} requires one of the roles {list(reg.required_roles)}; the "
        f"authenticated roles are {list(roles or [])}. Run it inside "
        "DBOS.with_authed_context(user, roles, ...) with a permitted role."
    )


def recorded_step(ctx: WorkflowContext | None, fid: int | None, name: str) -> StepRow | None:
    if ctx is None or fid is None or ctx.recorded is None:
        return None
    rec = ctx.recorded.get(fid)
    if rec is not None and rec.function_name != name:
        raise DBOSNonDeterministicError(
            f"Workflow {ctx.workflow_id!r} ({ctx.name}) called {name!r} as its step {fid}, "
            f"but its recorded step {fid} is {rec.function_name!r}. Workflow code must call "
            "the same steps in the same order on every execution; move non-deterministic "
            "code (time, randomness, I/O) into steps."
        )
    return rec


# --- steps ---------------------------------------------------------------------------


def run_in_background(rt: Runtime, inv: "WorkflowInvocation", prepared: Prepared) -> None:
    """Run a prepared invocation on the worker threads or the runtime's event loop."""
    ctx = prepared.ctx
    assert ctx is not None
    entry = inv.entry
    assert entry is not None

    def abandon() -> None:  # shutting down: leave the workflow for recovery
        rt.release(entry, None)

    if inv.reg.is_async:
        rt.submit_async(inv.run_async(ctx), abandon)
    else:
        rt.submit_sync(lambda: inv.run_sync(ctx), abandon)


def start_row(
    rt: Runtime, row: WorkflowRow, queue: str | None, steps: list[StepRow] | None = None
) -> None:
    """Run a PENDING workflow of this executor from its row (recovery and dequeue);
    ``steps``: its recorded steps, if already read."""
    reg = REGISTRY.functions.get(row.name)
    if reg is None or reg.kind != "workflow":
        rt.logger.error(
            "Cannot run workflow %r: no workflow named %r is registered in this process",
            row.workflow_id,
            row.name,
        )
        return
    claimed = rt.claim(row.workflow_id, None, queue, hand_off=True)
    if isinstance(claimed, Prepared):
        return  # already running here (or retried once that claim ends unexecuted)
    try:
        args, kwargs = load_inputs(rt, row)
        inv = WorkflowInvocation(rt, reg, args, kwargs)
        inv.entry = claimed
        inv.workflow_id = row.workflow_id
        prepared = inv.resume(row, steps)
    except Exception as exc:
        rt.logger.error("Cannot start workflow %r: %s", row.workflow_id, exc)
        rt.release(claimed, None)
        return
    run_in_background(rt, inv, prepared)


def recover(rt: Runtime) -> int:
    """Resume this executor's PENDING workflows; return how many were started."""
    started = 0
    for row in rt.sysdb.pending_workflows(rt.config.executor_id):
        counted = rt.sysdb.note_recovery_attempt(row.workflow_id, rt.config.max_recovery_attempts)
        if counted is None:
            continue  # it finished meanwhile (a recovered parent ran it as its child)
        if not counted:
            rt.logger.error(
                "Workflow %r exceeded max_recovery_attempts=%d; it is no longer recovered",
                row.workflow_id,
                rt.config.max_recovery_attempts,
            )
            continue
        start_row(rt, row, row.queue_name)
        started += 1
    if started:
        rt.logger.info("Recovering %d pending workflow(s)", started)
    return started


def poll_outcome(rt: Runtime, workflow_id: str, timeout: float | None) -> Outcome:
    """Wait until the workflow is final: on its execution in this process if there is one,
    else by reading the database with backoff."""
    end = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while True:
        entry = rt.find_entry(workflow_id)
        if entry is not None:
            try:
                return _outcome_of_future(entry.future, end)
            except ShutdownInterrupt:
                pass  # that execution was abandoned: read what is recorded
        outcome = _final_outcome(rt, workflow_id, end, timeout)
        if outcome is not None:
            return outcome
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


async def poll_outcome_async(rt: Runtime, workflow_id: str, timeout: float | None) -> Outcome:
    """Async twin of :func:`poll_outcome`: only the waiting differs."""
    end = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while True:
        entry = rt.find_entry(workflow_id)
        if entry is not None:
            try:
                remaining = None if end is None else max(0.0, end - time.monotonic())
                value = await asyncio.wait_for(asyncio.wrap_future(entry.future), remaining)
                return Outcome(value=value)
            except ShutdownInterrupt:
                pass  # that execution was abandoned: read what is recorded
            except TimeoutError:
                raise
            except Exception as exc:
                return Outcome(error=exc)
        outcome = _final_outcome(rt, workflow_id, end, timeout)
        if outcome is not None:
            return outcome
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def _final_outcome(
    rt: Runtime, workflow_id: str, end: float | None, timeout: float | None
) -> Outcome | None:
    """The workflow's outcome if it is final (remembered by this process, or recorded);
    None to keep waiting. Raises when it does not exist or the wait timed out."""
    recorded = rt.recorded_outcome(workflow_id)
    if recorded is not None:
        return recorded
    row = rt.sysdb.get_workflow(workflow_id)
    if row is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    if row.status in TERMINAL_STATUSES:
        return outcome_from_row(rt, row)
    if end is not None and time.monotonic() >= end:
        raise TimeoutError(f"workflow {workflow_id!r} did not finish in {timeout}s")
    return None


def _outcome_of_future(fut: "concurrent.futures.Future[Any]", end: float | None) -> Outcome:
    remaining = None if end is None else max(0.0, end - time.monotonic())
    try:
        return Outcome(value=fut.result(remaining))
    except concurrent.futures.TimeoutError as exc:
        raise TimeoutError("the workflow did not finish in time") from exc
    except Exception as exc:
        return Outcome(error=exc)


def registered_workflow(func: object, what: str) -> RegisteredFunction:
    reg = registration_of(func)
    if reg is None or reg.kind != "workflow":
        name = getattr(func, "__qualname__", repr(func))
        raise DBOSNotRegisteredError(
            f"{what} needs a DBOS workflow, but {name} is not decorated with "
            "@DBOS.workflow(); decorate it (at import time, before launch)."
        )
    return reg
