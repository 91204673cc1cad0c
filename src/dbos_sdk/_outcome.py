"""Small records shared by the workflow, step and runtime modules."""

import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dbos_sdk._context import WorkflowContext


class ShutdownInterrupt(BaseException):
    """Stops a workflow at its next step when the runtime shuts down; nothing is recorded,
    so the workflow is recovered at the next launch."""


@dataclass(slots=True)
class Outcome:
    """A function's result or the exception it raised."""

    value: Any = None
    error: BaseException | None = None

    def unwrap(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def call_sync(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Outcome:
    try:
        return Outcome(value=func(*args, **kwargs))
    except Exception as exc:
        return Outcome(error=exc)


async def call_async(
    func: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Outcome:
    try:
        return Outcome(value=await func(*args, **kwargs))
    except Exception as exc:
        return Outcome(error=exc)


@dataclass(slots=True, eq=False)
class Running:
    """An execution of a workflow in this process, which other callers can wait on."""

    workflow_id: str
    future: "concurrent.futures.Future[Any]"
    cancelled: threading.Event
    deadline_ms: int | None
    queue_name: str | None


@dataclass(slots=True)
class Prepared:
    """What a start found: execute it here, done already, wait, or enqueued."""

    action: str
    ctx: WorkflowContext | None = None
    outcome: Outcome | None = None
    entry: Running | None = None
