"""stdlib sqlite3 datasource for dbos-sdk: transactions on a SQLite file, the embedded
default (the demo's). ``BEGIN IMMEDIATE`` by default, a busy timeout, WAL.

Built on the public API only (``dbos_sdk``, ``dbos_sdk.datasource``, ``dbos_sdk.errors``).
Checkpointing is optimistic on a workflow's first execution and pessimistic when the
workflow may have run before (see :mod:`dbos_sdk.datasource`).
"""

from dbos_sqlite_datasource._datasource import (
    SQLITE_CHECKPOINT_TABLE,
    SQLITE_CHECKPOINT_TABLE_SQL,
    SQLiteBeginMode,
    SQLiteDataSource,
    SQLiteTransactionConfig,
)

__all__ = [
    "SQLITE_CHECKPOINT_TABLE",
    "SQLITE_CHECKPOINT_TABLE_SQL",
    "SQLiteBeginMode",
    "SQLiteDataSource",
    "SQLiteTransactionConfig",
]
