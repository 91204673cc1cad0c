"""The record of one step, as the system database and its held-record buffer keep it."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StepRow:
    """One recorded step (operation output) of a workflow."""

    function_id: int
    function_name: str
    output: str | None
    error: str | None
    child_workflow_id: str | None
    serialization: str
    started_at: int
    completed_at: int
