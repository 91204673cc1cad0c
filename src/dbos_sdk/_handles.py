"""Workflow handles, and starting workflows in the background."""

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from dbos_sdk._runtime import Runtime
from dbos_sdk._status import WorkflowStatus
from dbos_sdk._sysdb import WorkflowRow
from dbos_sdk._workflow import (
    WorkflowInvocation,
    load_inputs,
    outcome_from_row,
    poll_outcome,
    poll_outcome_async,
    registered_workflow,
    run_in_background,
    runtime_for,
)
from dbos_sdk.errors import DBOSNonExistentWorkflowError

R_co = TypeVar("R_co", covariant=True)


class WorkflowHandle(Generic[R_co]):
    """A started (or enqueued, or recorded) workflow, from synchronous code."""

    workflow_id: str

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id

    def get_result(self, *, timeout: float | None = None) -> R_co:
        """Wait for the workflow to finish; return its output or raise its error.

        Raises TimeoutError if ``timeout`` seconds pass first (the workflow goes on).
        """
        rt = runtime_for("WorkflowHandle.get_result")
        result: R_co = poll_outcome(rt, self.workflow_id, timeout).unwrap()
        return result

    def get_status(self) -> WorkflowStatus:
        """The workflow's current status record."""
        return get_status(runtime_for("WorkflowHandle.get_status"), self.workflow_id)

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.workflow_id!r})"


class WorkflowHandleAsync(Generic[R_co]):
    """A started (or enqueued, or recorded) workflow, from async code."""

    workflow_id: str

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id

    async def get_result(self, *, timeout: float | None = None) -> R_co:
        """Wait for the workflow to finish; return its output or raise its error."""
        rt = runtime_for("WorkflowHandleAsync.get_result")
        outcome = await poll_outcome_async(rt, self.workflow_id, timeout)
        result: R_co = outcome.unwrap()
        return result

    async def get_status(self) -> WorkflowStatus:
        """The workflow's current status record."""
        rt = runtime_for("WorkflowHandleAsync.get_status")
        return await asyncio.to_thread(get_status, rt, self.workflow_id)

    def __repr__(self) -> str:
        return f"WorkflowHandleAsync({self.workflow_id!r})"


def get_status(rt: Runtime, workflow_id: str, *, load: bool = True) -> WorkflowStatus:
    row = rt.sysdb.get_workflow(workflow_id)
    if row is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    return status_from_row(rt, row, load=load)


def status_from_row(rt: Runtime, row: WorkflowRow, *, load: bool = True) -> WorkflowStatus:
    inputs = output = error = None
    if load:
        try:
            inputs = load_inputs(rt, row)
        except Exception:
            inputs = None
        if row.status in ("SUCCESS", "ERROR"):
            outcome = outcome_from_row(rt, row)
            output, error = outcome.value, outcome.error
    return WorkflowStatus(
        workflow_id=row.workflow_id,
        status=row.status,
        name=row.name,
        class_name=row.class_name,
        config_name=row.config_name,
        input=inputs,
        output=output,
        error=error,
        executor_id=row.executor_id,
        application_version=row.application_version,
        queue_name=row.queue_name,
        priority=row.priority,
        authenticated_user=row.authenticated_user,
        assumed_role=row.assumed_role,
        authenticated_roles=row.authenticated_roles,
        created_at=row.created_at,
        updated_at=row.updated_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        timeout_ms=row.timeout_ms,
        deadline_epoch_ms=row.deadline_epoch_ms,
        recovery_attempts=row.recovery_attempts,
        forked_from=row.forked_from,
    )


def start_in_background(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], what: str
) -> str:
    """Durably start ``func`` and run it in the background; return its workflow ID."""
    reg = registered_workflow(func, what)
    rt = runtime_for(f"{what}({reg.name})")
    inv = WorkflowInvocation(rt, reg, _bind(func, args), kwargs)
    prepared = inv.prepare()
    if prepared.action == "execute":
        run_in_background(rt, inv, prepared)
    return inv.workflow_id


def enqueue_workflow(
    queue: str, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> "WorkflowHandle[Any]":
    reg = registered_workflow(func, "Queue.enqueue")
    rt = runtime_for(f"Queue.enqueue({reg.name})")
    inv = WorkflowInvocation(rt, reg, _bind(func, args), kwargs)
    inv.prepare(enqueue_on=queue)
    return WorkflowHandle(inv.workflow_id)


def _bind(func: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A bound method's instance becomes the first argument of the registered function."""
    owner = getattr(func, "__self__", None)
    if owner is not None and getattr(func, "__func__", None) is not None:
        return (owner, *args)
    return args
