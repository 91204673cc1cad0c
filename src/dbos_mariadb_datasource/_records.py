"""The MariaDB datasource's per-transaction config."""

import enum
from typing import Any

import attrs

from dbos_sdk.datasource import TransactionConfig
from dbos_sdk.errors import DBOSConfigurationError


class MariaDBIsolationLevel(enum.StrEnum):
    """An InnoDB transaction isolation level (the value is the SQL spelling)."""

    READ_UNCOMMITTED = "READ UNCOMMITTED"
    READ_COMMITTED = "READ COMMITTED"
    REPEATABLE_READ = "REPEATABLE READ"
    """The server's default. InnoDB's REPEATABLE READ reads a snapshot but writes the
    latest committed rows, so a read-modify-write can lose an update: lock what you read
    (``SELECT ... FOR UPDATE``) or use SERIALIZABLE."""
    SERIALIZABLE = "SERIALIZABLE"
    """Plain reads take shared locks; conflicting transactions then deadlock (1213) or
    time out on a lock (1205), and the datasource retries them."""


def _check_isolation(inst: object, attr: Any, value: object) -> None:
    if not isinstance(value, MariaDBIsolationLevel):
        choices = ", ".join(f"MariaDBIsolationLevel.{m.name}" for m in MariaDBIsolationLevel)
        raise DBOSConfigurationError(
            f"{type(inst).__name__}({attr.name}={value!r}): use one of {choices}."
        )


@attrs.frozen(kw_only=True)
class MariaDBTransactionConfig(TransactionConfig):
    """Per-call config of a MariaDB (or MySQL) transaction: ``isolation_level`` (default
    SERIALIZABLE, like the SDK's other datasources) and ``read_only`` (``START TRANSACTION
    READ ONLY``: the server rejects writes; no checkpoint is written)."""

    isolation_level: MariaDBIsolationLevel = attrs.field(
        default=MariaDBIsolationLevel.SERIALIZABLE, validator=_check_isolation
    )
