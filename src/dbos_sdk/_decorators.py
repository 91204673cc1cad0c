"""The wrappers behind @DBOS.workflow, @DBOS.step and @DBOS.required_roles."""

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, cast

from dbos_sdk._outcome import Outcome, Prepared
from dbos_sdk._registry import REG_ATTR, REGISTRY, RegisteredFunction, StepOptions, registration_of
from dbos_sdk._runtime import Runtime
from dbos_sdk._step import run_step_async, run_step_sync
from dbos_sdk._workflow import WorkflowInvocation, poll_outcome, poll_outcome_async, runtime_for
from dbos_sdk.errors import DBOSRegistrationError

P = ParamSpec("P")
R = TypeVar("R")


def _settle_sync(rt: Runtime, inv: WorkflowInvocation, p: Prepared) -> Outcome:
    if p.action == "execute":
        assert p.ctx is not None
        return inv.run_sync(p.ctx)
    if p.action == "done":
        assert p.outcome is not None
        return p.outcome
    return poll_outcome(rt, inv.workflow_id, None)


async def _settle_async(rt: Runtime, inv: WorkflowInvocation, p: Prepared) -> Outcome:
    if p.action == "execute":
        assert p.ctx is not None
        return await inv.run_async(p.ctx)
    if p.action == "done":
        assert p.outcome is not None
        return p.outcome
    return await poll_outcome_async(rt, inv.workflow_id, None)


def invoke_workflow(reg: RegisteredFunction, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    rt = runtime_for(f"Workflow {reg.name!r}")
    inv = WorkflowInvocation(rt, reg, args, kwargs)
    return _settle_sync(rt, inv, inv.prepare()).unwrap()


async def invoke_workflow_async(
    reg: RegisteredFunction, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    rt = runtime_for(f"Workflow {reg.name!r}")
    inv = WorkflowInvocation(rt, reg, args, kwargs)
    outcome = await _settle_async(rt, inv, inv.prepare())
    return outcome.unwrap()


def _register(
    func: Callable[P, R],
    reg: RegisteredFunction,
    sync_entry: Callable[[RegisteredFunction, tuple[Any, ...], dict[str, Any]], Any],
    async_entry: Callable[[RegisteredFunction, tuple[Any, ...], dict[str, Any]], Any],
) -> Callable[P, R]:
    if registration_of(func) is not None:
        raise DBOSRegistrationError(
            f"{reg.name!r} is already decorated by DBOS; apply one of @DBOS.workflow, "
            "@DBOS.step or a transaction decorator, once."
        )
    if reg.is_async:

        async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await async_entry(reg, args, kwargs)

        wrapper: Callable[..., Any] = functools.wraps(func)(awrapper)
    else:

        def swrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return sync_entry(reg, args, kwargs)

        wrapper = functools.wraps(func)(swrapper)
    setattr(wrapper, REG_ATTR, reg)
    reg.wrapper = wrapper
    REGISTRY.add_function(reg)
    return cast(Callable[P, R], wrapper)


def _pending_roles(func: Callable[..., Any]) -> tuple[str, ...] | None:
    roles = getattr(func, "__dbos_required_roles__", None)
    return tuple(roles) if roles is not None else None


def make_workflow(func: Callable[P, R], name: str | None) -> Callable[P, R]:
    reg = RegisteredFunction(
        name=name or func.__qualname__,
        kind="workflow",
        func=func,
        is_async=inspect.iscoroutinefunction(func),
        required_roles=_pending_roles(func),
    )
    return _register(func, reg, invoke_workflow, invoke_workflow_async)


def make_step(func: Callable[P, R], name: str | None, options: StepOptions) -> Callable[P, R]:
    if options.max_attempts < 1 or options.interval_seconds < 0 or options.backoff_rate < 1:
        raise DBOSRegistrationError(
            f"Step {name or func.__qualname__!r}: max_attempts must be >= 1, interval_seconds "
            ">= 0 and backoff_rate >= 1."
        )
    reg = RegisteredFunction(
        name=name or func.__qualname__,
        kind="step",
        func=func,
        is_async=inspect.iscoroutinefunction(func),
        step_options=options,
    )
    return _register(func, reg, run_step_sync, run_step_async)


def required_roles(roles: Sequence[str]) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Place below @DBOS.workflow(): the workflow then needs one of ``roles``."""
    if isinstance(roles, str) or not roles:
        raise DBOSRegistrationError(
            "DBOS.required_roles takes a non-empty list of role names, e.g. ['admin']."
        )

    def deco(func: Callable[P, R]) -> Callable[P, R]:
        reg = registration_of(func)
        if reg is not None:
            reg.required_roles = tuple(roles)
        else:
            setattr(func, "__dbos_required_roles__", tuple(roles))  # noqa: B010
        return func

    return deco
