"""The method of operation of a transaction, written once without I/O.

:func:`transaction_protocol` is a generator that yields what it needs done (look the
checkpoint up, run an attempt, record an error, wait) and receives each result as an
:class:`Outcome`. The sync and async base classes in ``_base`` carry the instructions out
with their datasource's hooks; nothing else differs between them.
"""

import enum
import logging
import time
from collections.abc import Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

import attrs

from dbos_sdk._context import current_step, current_workflow
from dbos_sdk._outcome import Outcome
from dbos_sdk._serialization import deserialize_value, serialize_error, serialize_value
from dbos_sdk._workflow import runtime_for
from dbos_sdk.errors import DBOSTransactionRetriesExceededError

from ._records import TransactionCheckpoint, TransactionRetryPolicy

logger = logging.getLogger("dbos_sdk")

INITIAL_WAIT_S: Final = 0.001
BACKOFF_RATE: Final = 1.5
MAX_WAIT_S: Final = 2.0


@attrs.frozen(kw_only=True)
class TransactionStep:
    """Where the transaction in progress sits in its workflow: the key of its completion
    checkpoint. ``current_transaction_step()`` returns it inside a transaction that runs
    as a workflow step, and None elsewhere."""

    workflow_id: str
    step_id: int
    name: str
    """The name the step is recorded under."""
    may_have_run: bool
    """True when an earlier execution of this workflow may have run this transaction
    (recovery, resume, dequeue), so the checkpoint must be looked up before running it.
    False on a workflow's first execution, where a conflicting checkpoint can only come
    from a concurrent duplicate: checkpointing optimistically is then safe."""

    def encode_output(self, value: object) -> TransactionCheckpoint:
        """The checkpoint recording ``value`` as this step's output (runtime serializer)."""
        ser = runtime_for(f"Transaction {self.name!r}").config.serializer
        text = serialize_value(ser, value, f"the output of transaction {self.name!r}")
        return TransactionCheckpoint(
            workflow_id=self.workflow_id,
            step_id=self.step_id,
            output=text,
            error=None,
            serialization=ser.name,
        )

    def encode_error(self, error: BaseException) -> TransactionCheckpoint:
        """The checkpoint recording ``error`` as this step's outcome."""
        ser = runtime_for(f"Transaction {self.name!r}").config.serializer
        return TransactionCheckpoint(
            workflow_id=self.workflow_id,
            step_id=self.step_id,
            output=None,
            error=serialize_error(ser, error),
            serialization=ser.name,
        )

    def replay(self, checkpoint: TransactionCheckpoint) -> Any:
        """Return the recorded output, or raise the recorded error."""
        return replayed(self, checkpoint).unwrap()


def replayed(step: TransactionStep, cp: TransactionCheckpoint) -> Outcome:
    rt = runtime_for(f"Transaction {step.name!r}")
    ser = rt.serializer_for(cp.serialization)
    what = f"transaction {step.name!r} (step {step.step_id} of workflow {step.workflow_id!r})"
    if cp.error is not None:
        return Outcome(error=deserialize_value(ser, cp.error, f"the recorded error of {what}"))
    if cp.output is None:
        return Outcome(value=None)
    return Outcome(value=deserialize_value(ser, cp.output, f"the recorded output of {what}"))


# --- context -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransactionCall:
    """Set by a transaction wrapper around its handler call."""

    name: str
    step: TransactionStep | None


transaction_call: ContextVar[TransactionCall | None] = ContextVar(
    "dbos_transaction_call", default=None
)
"""The transaction whose handler runs now (also while its user function runs)."""


def current_transaction_step() -> TransactionStep | None:
    """The workflow step of the transaction in progress, or None (no transaction, or a
    transaction outside a workflow). Handlers call it to find their checkpoint key."""
    call = transaction_call.get()
    return call.step if call is not None else None


def step_for(name: str) -> TransactionStep | None:
    """The step a transaction called now runs as (the engine set current_step for it)."""
    ctx = current_workflow.get()
    call = current_step.get()
    if ctx is None or call is None:
        return None
    return TransactionStep(
        workflow_id=ctx.workflow_id,
        step_id=call.step_id,
        name=name,
        may_have_run=ctx.recorded is not None,
    )


# --- the method of operation --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lookup:
    """Read the step's checkpoint; reply Outcome(value=TransactionCheckpoint | None)."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """Run the function in a new transaction and commit it, with the step's checkpoint
    when ``checkpoint_step`` is set; reply Outcome(value=result), Outcome(value=CONFLICT)
    when the checkpoint key existed (the transaction was rolled back), or Outcome(error)."""

    number: int
    checkpoint_step: TransactionStep | None


@dataclass(frozen=True, slots=True)
class RecordError:
    """Insert ``checkpoint`` (an error) in a transaction of its own unless its key exists;
    reply Outcome(value=True) if inserted, Outcome(value=False) if the key existed."""

    checkpoint: TransactionCheckpoint


@dataclass(frozen=True, slots=True)
class Wait:
    """Sleep before the next try."""

    seconds: float


Instruction = Lookup | Attempt | RecordError | Wait
CONFLICT: Final = object()
"""Attempt reply: another execution committed this step's checkpoint first."""

LOOKUP: Final = Lookup()


@dataclass(frozen=True, slots=True)
class TransactionPlan:
    name: str
    step: TransactionStep | None
    """Set when the transaction checkpoints: in a workflow, and not read-only."""
    retry: TransactionRetryPolicy
    is_retriable: Callable[[BaseException], bool]


class _Budget:
    """The retry bound shared by every try of one invocation."""

    def __init__(self, plan: TransactionPlan) -> None:
        self.plan = plan
        self.failures = 0
        self.started = time.monotonic()
        self.wait = INITIAL_WAIT_S

    def next_wait(self, error: BaseException) -> float | Outcome:
        """The wait before the next try, or the outcome that ends the retries."""
        self.failures += 1
        elapsed = time.monotonic() - self.started
        policy = self.plan.retry
        if (policy.max_attempts is not None and self.failures >= policy.max_attempts) or (
            policy.max_elapsed_s is not None and elapsed + self.wait > policy.max_elapsed_s
        ):
            exc = DBOSTransactionRetriesExceededError(
                self.plan.name, self.failures, elapsed, f"{type(error).__name__}: {error}"
            )
            exc.__cause__ = error
            return Outcome(error=exc)
        wait = self.wait
        self.wait = min(self.wait * BACKOFF_RATE, MAX_WAIT_S)
        return wait


@dataclass(frozen=True, slots=True)
class Settled:
    """How one transaction invocation ended."""

    outcome: Outcome
    checkpointed: bool
    """The outcome is the step's completion checkpoint, committed in the datasource (by
    this invocation or by an earlier execution): durable without the system database."""


TransactionProtocol = Generator[Instruction, Outcome, Settled]


def transaction_protocol(plan: TransactionPlan) -> TransactionProtocol:
    """Run one transaction invocation to its outcome.

    Inside a workflow (``plan.step`` set): replay the checkpoint if an earlier execution
    may have written it; otherwise run, checkpoint and commit in one transaction. A
    checkpoint conflict means another execution committed first: its outcome is returned.
    Retriable errors are retried with backoff within ``plan.retry``; any other error is
    recorded as the step's checkpoint (in a transaction of its own) and returned.
    """
    step = plan.step
    budget = _Budget(plan)
    look_first = step is not None and step.may_have_run
    number = 0
    while True:
        if step is not None and look_first:
            found = yield LOOKUP
            if found.error is not None:
                ended = yield from _retry_wait(plan, budget, found.error)
                if ended is not None:
                    return Settled(ended, checkpointed=False)
                continue
            if isinstance(found.value, TransactionCheckpoint):
                return Settled(replayed(step, found.value), checkpointed=True)
        number += 1
        result = yield Attempt(number, step)
        if result.error is None:
            if result.value is CONFLICT:
                look_first = True  # the winner's checkpoint is committed: replay it
                continue
            return Settled(result, checkpointed=step is not None)
        error = result.error
        if plan.is_retriable(error):
            ended = yield from _retry_wait(plan, budget, error)
            if ended is not None:
                return Settled(ended, checkpointed=False)
            look_first = True  # a duplicate may have committed while we waited
            continue
        if step is None:
            return Settled(result, checkpointed=False)
        recorded = yield from _record_error(plan, budget, step, error)
        if recorded is not _ErrorRecord.OTHER_WON:
            return Settled(result, checkpointed=recorded is _ErrorRecord.RECORDED)
        look_first = True  # another execution recorded its outcome first: replay it


def _retry_wait(
    plan: TransactionPlan, budget: _Budget, error: BaseException
) -> Generator[Instruction, Outcome, Outcome | None]:
    """Wait before the next try; return an outcome instead when the error is final."""
    if not plan.is_retriable(error):
        return Outcome(error=error)
    wait = budget.next_wait(error)
    if isinstance(wait, Outcome):
        return wait
    logger.debug("Transaction %r: retriable error %r; retrying in %.3fs", plan.name, error, wait)
    yield Wait(wait)
    return None


class _ErrorRecord(enum.Enum):
    RECORDED = enum.auto()
    OTHER_WON = enum.auto()
    """Another execution's checkpoint was there first."""
    FAILED = enum.auto()


def _record_error(
    plan: TransactionPlan, budget: _Budget, step: TransactionStep, error: BaseException
) -> Generator[Instruction, Outcome, _ErrorRecord]:
    """Record ``error`` as the step's checkpoint; say whether it was, or another
    execution's checkpoint was there first. If recording fails for good, the error is
    still returned to the caller (and recorded by the system database); a crash before
    that record runs the rolled-back transaction again, which is safe."""
    checkpoint = step.encode_error(error)
    while True:
        done = yield RecordError(checkpoint)
        if done.error is None:
            return _ErrorRecord.RECORDED if done.value else _ErrorRecord.OTHER_WON
        ended = yield from _retry_wait(plan, budget, done.error)
        if ended is not None:
            logger.warning(
                "Transaction %r: recording its error %r in the datasource failed: %r",
                plan.name,
                error,
                done.error,
            )
            return _ErrorRecord.FAILED
