"""Frozen records of the datasource API: transaction configs, retry bounds, checkpoints."""

import enum
import math
from typing import Any

import attrs

from dbos_sdk.errors import DBOSConfigurationError


class PGIsolationLevel(enum.StrEnum):
    """A PostgreSQL transaction isolation level (the value is the SQL spelling)."""

    READ_COMMITTED = "READ COMMITTED"
    REPEATABLE_READ = "REPEATABLE READ"
    SERIALIZABLE = "SERIALIZABLE"


def _check_bool(inst: object, attr: Any, value: object) -> None:
    if not isinstance(value, bool):
        raise DBOSConfigurationError(
            f"{type(inst).__name__}({attr.name}={value!r}): give True or False."
        )


def _check_isolation(inst: object, attr: Any, value: object) -> None:
    if not isinstance(value, PGIsolationLevel):
        choices = ", ".join(f"PGIsolationLevel.{m.name}" for m in PGIsolationLevel)
        raise DBOSConfigurationError(
            f"{type(inst).__name__}({attr.name}={value!r}): use one of {choices}."
        )


@attrs.frozen(kw_only=True)
class TransactionConfig:
    """What every datasource's per-call transaction config has: ``read_only``.

    A read-only transaction is enforced by the database (PostgreSQL ``READ ONLY``, SQLite
    ``query_only``) and writes no completion checkpoint: in a workflow its result is
    recorded by the system database only, so a crash before that record runs it again.
    """

    read_only: bool = attrs.field(default=False, validator=_check_bool)


@attrs.frozen(kw_only=True)
class PGTransactionConfig(TransactionConfig):
    """Per-call settings of a PostgreSQL transaction: isolation level and read-only.

    Each PostgreSQL datasource subclasses it (``PsycopgTransactionConfig``,
    ``SQLAlchemyTransactionConfig``), so that one datasource's config given to another is
    a type error.
    """

    isolation_level: PGIsolationLevel = attrs.field(
        default=PGIsolationLevel.SERIALIZABLE, validator=_check_isolation
    )


def _check_attempts(_inst: object, _attr: Any, value: int | None) -> None:
    if value is not None and value < 1:
        raise DBOSConfigurationError(
            f"TransactionRetryPolicy(max_attempts={value!r}): give a number >= 1, or None "
            "to retry without an attempt bound."
        )


def _check_elapsed(_inst: object, _attr: Any, value: float | None) -> None:
    if value is not None and (math.isnan(value) or value <= 0):
        raise DBOSConfigurationError(
            f"TransactionRetryPolicy(max_elapsed_s={value!r}): give a positive number of "
            "seconds, or None to retry without a time bound."
        )


@attrs.frozen(kw_only=True)
class TransactionRetryPolicy:
    """How long a transaction is retried after retriable errors (serialization failure,
    deadlock, lost connection, SQLite busy) before it fails with
    :class:`~dbos_sdk.errors.DBOSTransactionRetriesExceededError`.

    The waits between attempts are fixed: 1 ms, then 1.5 times longer each time, at most
    2 s. Both bounds apply; ``None`` removes one (both ``None``: retry forever, as DBOS
    Transact does). The defaults give up after 25 attempts or 30 s, whichever comes first.
    """

    max_attempts: int | None = attrs.field(default=25, validator=_check_attempts)
    max_elapsed_s: float | None = attrs.field(default=30.0, validator=_check_elapsed)


@attrs.frozen(kw_only=True)
class TransactionCheckpoint:
    """A transaction's completion checkpoint, as stored in the datasource's own database:
    the key (workflow ID, step number) and the output *or* error, serialized in the
    format named by ``serialization``."""

    workflow_id: str
    step_id: int
    output: str | None
    error: str | None
    serialization: str
