"""Per-task execution context: the workflow in progress and the options for the next start."""

import threading
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Self

from dbos_sdk._sysdb import StepRow
from dbos_sdk.errors import DBOSConfigurationError


@dataclass(slots=True)
class WorkflowContext:
    """What a running workflow needs to number and checkpoint its steps."""

    workflow_id: str
    name: str
    recorded: dict[int, StepRow] | None
    """Steps recorded by an earlier execution; None for a first execution (nothing to replay)."""
    cancelled: threading.Event
    deadline_ms: int | None
    authenticated_user: str | None = None
    authenticated_roles: tuple[str, ...] | None = None
    assumed_role: str | None = None
    next_step: int = 1

    def take_step_id(self) -> int:
        fid = self.next_step
        self.next_step += 1
        return fid


@dataclass(frozen=True, slots=True)
class AuthContext:
    user: str | None
    roles: tuple[str, ...]


@dataclass(slots=True)
class StartOptions:
    """Options that SetWorkflowID / SetWorkflowOptions give to the next workflow start."""

    workflow_id: str | None = None
    queue: str | None = None
    timeout_s: float | None = None
    deadline: datetime | None = None
    priority: int | None = None
    extra: dict[str, object] = field(default_factory=lambda: dict[str, object]())


current_workflow: ContextVar[WorkflowContext | None] = ContextVar("dbos_workflow", default=None)
next_start: ContextVar[StartOptions | None] = ContextVar("dbos_next_start", default=None)
current_auth: ContextVar[AuthContext | None] = ContextVar("dbos_auth", default=None)


@dataclass(slots=True, eq=False)
class StepCall:
    """One call of a step's (or transaction's) function, as the engine makes it."""

    step_id: int
    recorded_elsewhere: bool = False
    """Set (by a datasource, through ``mark_recorded_elsewhere``) when the call's outcome
    is durably committed in another database already: a transaction's completion
    checkpoint. The system database may then hold its record of the step for the
    workflow's next write (see ``SystemDatabase.record_step``), since replay finds the
    outcome there if the record is lost."""


current_step: ContextVar[StepCall | None] = ContextVar("dbos_step", default=None)
"""The step (or transaction) whose function is running; None elsewhere. Steps and
workflows called from inside a step are plain calls."""


def mark_recorded_elsewhere() -> None:
    """Say that the outcome of the step running now is durably recorded outside the
    system database (see :attr:`StepCall.recorded_elsewhere`); a no-op outside a step."""
    call = current_step.get()
    if call is not None:
        call.recorded_elsewhere = True


def take_start_options() -> StartOptions | None:
    """Consume the options set for the next start: they apply to one workflow only."""
    opts = next_start.get()
    if opts is not None:
        next_start.set(None)
    return opts


class SetWorkflowOptions:
    """Options for the next workflow started in this block (by call, start or enqueue).

    ``workflow_id`` makes the start idempotent; ``queue`` (a queue name) enqueues it there;
    ``timeout`` (seconds from the start of its execution) or ``deadline`` (an absolute,
    timezone-aware datetime) cancel it if it has not finished by then; ``priority`` orders
    it on a queue with ``priority_enabled`` (lower runs first).
    """

    def __init__(
        self,
        *,
        workflow_id: str | None = None,
        queue: str | None = None,
        timeout: float | None = None,
        deadline: datetime | None = None,
        priority: int | None = None,
    ) -> None:
        if workflow_id is not None and not workflow_id:
            raise DBOSConfigurationError(
                "SetWorkflowOptions(workflow_id='') : give a non-empty ID."
            )
        if timeout is not None and timeout <= 0:
            raise DBOSConfigurationError(
                f"SetWorkflowOptions(timeout={timeout!r}): a timeout is a positive number of seconds."
            )
        if deadline is not None and deadline.tzinfo is None:
            raise DBOSConfigurationError(
                "SetWorkflowOptions(deadline=...) needs a timezone-aware datetime, e.g. "
                "datetime.now(timezone.utc) + timedelta(minutes=5)."
            )
        self._opts = StartOptions(
            workflow_id=workflow_id,
            queue=queue,
            timeout_s=timeout,
            deadline=deadline,
            priority=priority,
        )
        self._saved: StartOptions | None = None

    def __enter__(self) -> Self:
        self._saved = next_start.get()
        next_start.set(self._opts)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        next_start.set(self._saved)


class SetWorkflowID(SetWorkflowOptions):
    """Run the next workflow started in this block under ``workflow_id``.

    A second start with the same ID does not run the workflow again: it returns (or waits
    for) the outcome of the first.
    """

    def __init__(self, workflow_id: str) -> None:
        super().__init__(workflow_id=workflow_id)


@contextmanager
def authed(user: str | None, roles: Sequence[str]) -> Generator[None, None, None]:
    if isinstance(roles, str):
        raise DBOSConfigurationError(
            f"The roles of user {user!r} must be a list of role names, e.g. [{roles!r}], "
            "not one string."
        )
    token = current_auth.set(AuthContext(user, tuple(roles)))
    try:
        yield
    finally:
        current_auth.reset(token)
