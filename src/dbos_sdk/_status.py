"""Public records describing workflows and their steps."""

from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class WorkflowStatus:
    """A workflow as recorded in the system database.

    ``status`` is one of PENDING, ENQUEUED, SUCCESS, ERROR, CANCELLED or
    MAX_RECOVERY_ATTEMPTS_EXCEEDED. Times are epoch milliseconds.
    """

    workflow_id: str
    status: str
    name: str
    class_name: str | None
    config_name: str | None
    input: tuple[tuple[Any, ...], dict[str, Any]] | None
    """The (args, kwargs) the workflow was started with, when loaded."""
    output: Any
    error: BaseException | None
    executor_id: str | None
    application_version: str
    queue_name: str | None
    priority: int
    authenticated_user: str | None
    assumed_role: str | None
    authenticated_roles: list[str] | None
    created_at: int
    updated_at: int
    started_at: int | None
    completed_at: int | None
    timeout_ms: int | None
    deadline_epoch_ms: int | None
    recovery_attempts: int
    forked_from: str | None


@attrs.frozen(kw_only=True)
class StepInfo:
    """One recorded step of a workflow (from DBOS.get_workflow_steps)."""

    function_id: int
    function_name: str
    output: Any
    error: BaseException | None
    child_workflow_id: str | None
    started_at: int
    completed_at: int
