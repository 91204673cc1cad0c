"""How a step is replayed, or run with retries and checkpointed.

The logic is one generator (:func:`step_protocol`) that yields what it needs done: call
the function, or sleep before a retry. Thin sync and async drivers carry it out.
"""

import asyncio
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from dbos_sdk import _tracing
from dbos_sdk._context import StepCall, WorkflowContext, current_step, current_workflow
from dbos_sdk._outcome import Outcome, ShutdownInterrupt, call_async, call_sync
from dbos_sdk._registry import RegisteredFunction
from dbos_sdk._runtime import Runtime, current_runtime
from dbos_sdk._serialization import serialize_error, serialize_value
from dbos_sdk._sysdb import StepRow, now_ms
from dbos_sdk._workflow import load_value, recorded_step
from dbos_sdk.errors import DBOSError, DBOSMaxStepRetriesExceededError, DBOSWorkflowCancelledError


@dataclass(frozen=True, slots=True)
class Call:
    """Instruction: call the step's function as ``call`` (the driver makes it the current
    step) and send back its Outcome."""

    call: StepCall


StepProtocol = Generator["Call | float", "Outcome | None", Outcome]


def step_protocol(rt: Runtime, ctx: WorkflowContext, reg: RegisteredFunction) -> StepProtocol:
    """Replay a recorded step, or run it (with retries) and record its outcome."""
    fid = ctx.take_step_id()
    rec = recorded_step(ctx, fid, reg.name)
    if rec is not None:
        return _step_outcome(rt, ctx, rec)
    check_interrupts(rt, ctx)
    opts = reg.step_options
    attempts = opts.max_attempts if opts is not None and opts.retries_allowed else 1
    interval = opts.interval_seconds if opts is not None else 0.0
    errors: list[BaseException] = []
    started = now_ms()
    outcome = Outcome()
    recorded_elsewhere = False
    for attempt in range(1, attempts + 1):
        call = StepCall(fid)
        got = yield Call(call)
        assert got is not None
        outcome = got
        # An outcome a datasource has durably checkpointed already (and that is recorded
        # here as it is) may be recorded here later: replay would find it there.
        recorded_elsewhere = call.recorded_elsewhere
        if outcome.error is None:
            break
        errors.append(outcome.error)
        if attempt < attempts:
            rt.logger.warning(
                "Step %r of workflow %r failed (attempt %d of %d): %r; retrying in %.3gs",
                reg.name,
                ctx.workflow_id,
                attempt,
                attempts,
                outcome.error,
                interval,
            )
            yield interval
            check_interrupts(rt, ctx)
            interval *= opts.backoff_rate if opts is not None else 1.0
    if outcome.error is not None and attempts > 1:
        outcome = Outcome(error=DBOSMaxStepRetriesExceededError(reg.name, attempts, errors))
        recorded_elsewhere = False
    ser = rt.config.serializer
    if outcome.error is None:
        try:
            out = serialize_value(ser, outcome.value, f"the output of step {reg.name!r}")
            err = None
        except DBOSError as exc:
            outcome, out, err = Outcome(error=exc), None, serialize_error(ser, exc)
            recorded_elsewhere = False
    else:
        out, err = None, serialize_error(ser, outcome.error)
    row = StepRow(fid, reg.name, out, err, None, ser.name, started, now_ms())
    winner = rt.sysdb.record_step(ctx.workflow_id, row, recorded_elsewhere=recorded_elsewhere)
    if winner is not None:  # another execution of this workflow recorded it first
        return _step_outcome(rt, ctx, winner)
    return outcome


def _step_outcome(rt: Runtime, ctx: WorkflowContext, rec: StepRow) -> Outcome:
    what = f"step {rec.function_id} ({rec.function_name}) of workflow {ctx.workflow_id!r}"
    if rec.error is not None:
        return Outcome(error=load_value(rt, rec.error, rec.serialization, f"the error of {what}"))
    return Outcome(value=load_value(rt, rec.output, rec.serialization, f"the output of {what}"))


def check_interrupts(rt: Runtime, ctx: WorkflowContext) -> None:
    """Stop the workflow before its next step if it was cancelled, timed out, or the
    runtime is shutting down."""
    if rt.shutting_down:
        raise ShutdownInterrupt(ctx.workflow_id)
    if ctx.cancelled.is_set():
        raise DBOSWorkflowCancelledError(ctx.workflow_id)
    if ctx.deadline_ms is not None and now_ms() >= ctx.deadline_ms:
        raise DBOSWorkflowCancelledError(ctx.workflow_id, "its timeout or deadline passed")


def _step_attrs(ctx: WorkflowContext) -> dict[str, Any]:
    return {"dbos.workflow_id": ctx.workflow_id, "dbos.kind": "step"}


def run_step_sync(reg: RegisteredFunction, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run a step from sync code: checkpointed inside a workflow, a plain call elsewhere."""
    ctx = current_workflow.get()
    if ctx is None or current_step.get() is not None:
        return reg.func(*args, **kwargs)  # outside a workflow, or nested in a step
    rt = _runtime_of(ctx)
    gen = step_protocol(rt, ctx, reg)
    with _tracing.span(reg.name, _step_attrs(ctx)) as sp:
        outcome = _drive_sync(gen, reg, args, kwargs)
        sp.record(outcome.error)
    return outcome.unwrap()  # outside the span, which would record the error a second time


def _drive_sync(
    gen: StepProtocol, reg: RegisteredFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Outcome:
    res: Outcome | None = None
    try:
        while True:
            instr = gen.send(res)
            if isinstance(instr, Call):
                token = current_step.set(instr.call)
                try:
                    res = call_sync(reg.func, args, kwargs)
                finally:
                    current_step.reset(token)
            else:
                time.sleep(instr)
                res = None
    except StopIteration as stop:
        outcome: Outcome = stop.value
        return outcome


async def run_step_async(
    reg: RegisteredFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Async twin of :func:`run_step_sync`: only the call and the sleep differ."""
    ctx = current_workflow.get()
    if ctx is None or current_step.get() is not None:
        return await reg.func(*args, **kwargs)
    rt = _runtime_of(ctx)
    gen = step_protocol(rt, ctx, reg)
    with _tracing.span(reg.name, _step_attrs(ctx)) as sp:
        outcome = await _drive_async(gen, reg, args, kwargs)
        sp.record(outcome.error)
    return outcome.unwrap()


async def _drive_async(
    gen: StepProtocol, reg: RegisteredFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Outcome:
    res: Outcome | None = None
    try:
        while True:
            instr = gen.send(res)
            if isinstance(instr, Call):
                token = current_step.set(instr.call)
                try:
                    res = await call_async(reg.func, args, kwargs)
                finally:
                    current_step.reset(token)
            else:
                await asyncio.sleep(instr)
                res = None
    except StopIteration as stop:
        outcome: Outcome = stop.value
        return outcome


def _runtime_of(ctx: WorkflowContext) -> Runtime:
    """The runtime a step of a running workflow checkpoints to. Once the runtime that ran
    the workflow is shutting down or gone, the workflow stops here, unrecorded, and is
    recovered at the next launch (rather than failing on a closed system database)."""
    rt = current_runtime()
    if rt is None or not rt.launched or rt.shutting_down:
        raise ShutdownInterrupt(ctx.workflow_id)
    return rt
