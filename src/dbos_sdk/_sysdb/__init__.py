"""The system database: one interface (:class:`SystemDatabase`), two backends."""

from dbos_sdk._config import DBOSConfig, parse_database_url
from dbos_sdk._sysdb._base import (
    INTERNAL_QUEUE,
    TERMINAL_STATUSES,
    DispatchStateRow,
    QueueLimits,
    SystemDatabase,
    WorkflowFilter,
    WorkflowRow,
    now_ms,
)
from dbos_sdk._sysdb._rows import StepRow


def open_system_database(config: DBOSConfig) -> SystemDatabase:
    """Connect to the configured system database (schema not yet migrated)."""
    kind, target = parse_database_url(config.resolved_system_database_url)
    if kind == "sqlite":
        from dbos_sdk._sysdb._sqlite import SQLiteSystemDatabase

        return SQLiteSystemDatabase(target)
    from dbos_sdk._sysdb._postgres import PostgresSystemDatabase

    return PostgresSystemDatabase(
        target, schema=config.postgres_schema, pool_size=config.sys_db_pool_size
    )


__all__ = [
    "INTERNAL_QUEUE",
    "TERMINAL_STATUSES",
    "DispatchStateRow",
    "QueueLimits",
    "StepRow",
    "SystemDatabase",
    "WorkflowFilter",
    "WorkflowRow",
    "now_ms",
    "open_system_database",
]
