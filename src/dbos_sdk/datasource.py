"""The datasource plugin API: what a datasource author (and its user) programs against.

A *datasource* runs functions as database transactions that are workflow steps. Its
method of operation, for a transaction called in a workflow:

1. The step wrapper consults the system database; a recorded step is replayed.
2. Otherwise the datasource opens a transaction on its own database and runs the
   function, which reads the datasource's ``client`` (the function keeps its signature).
3. It writes the *completion checkpoint* (workflow ID + step number, output or error,
   serialization format) into ``transaction_completion`` in the **same** transaction, and
   commits. A key conflict there means another execution of the step committed first: the
   transaction rolls back and the winner's outcome is returned (or raised).
4. The wrapper records the step in the system database and ends the step's trace span.

If the process dies between 3 and 4, the recovered workflow finds the checkpoint and
returns it without running the function again. Checkpointing is *optimistic* on a
workflow's first execution (no extra read: insert at the end) and *pessimistic* when the
engine resumes a workflow that may have run before (recovery, resume, dequeue: look the
checkpoint up first) -- see :attr:`TransactionStep.may_have_run`.

Retriable errors (serialization failure, deadlock, lost connection, a busy SQLite file)
are retried with backoff (1 ms, x1.5, at most 2 s) within the datasource's
:class:`TransactionRetryPolicy`; then :class:`~dbos_sdk.errors.DBOSTransactionRetriesExceededError`.
Any other error rolls the transaction back, is recorded as the step's checkpoint, and is
raised (again on replay, without running the function). A read-only transaction writes no
checkpoint. Outside a workflow a transaction is a plain, unrecorded transaction; inside a
step or another transaction it is :class:`~dbos_sdk.errors.DBOSNestedTransactionError`.

Datasource authors implement :class:`DataSourceTransactionHandler` (or its async twin)
directly, or subclass :class:`SyncDataSource` / :class:`AsyncDataSource`, which implement
this method of operation on a handful of database hooks.
"""

from dbos_sdk._datasource._base import AsyncDataSource, SyncDataSource, SyncTransactionDecorator
from dbos_sdk._datasource._core import TransactionStep, current_transaction_step
from dbos_sdk._datasource._loop import BackgroundLoop
from dbos_sdk._datasource._pg import (
    CHECKPOINT_TABLE,
    check_pg_schema_name,
    create_transaction_completion_schema_pg,
    create_transaction_completion_table_pg,
    get_pg_error_code,
    is_pg_key_conflict_error,
    is_pg_retriable_transaction_error,
    pg_commit_with_checkpoint,
    pg_commit_with_checkpoint_async,
    pg_ensure_checkpoint_schema,
    pg_ensure_checkpoint_schema_async,
    pg_insert_checkpoint_if_absent,
    pg_insert_checkpoint_if_absent_async,
    pg_install_checkpoint_schema,
    pg_install_checkpoint_schema_async,
    pg_read_checkpoint,
    pg_read_checkpoint_async,
)
from dbos_sdk._datasource._protocols import (
    AsyncDataSourceTransactionHandler,
    AsyncDBOSDataSource,
    DataSourceTransactionHandler,
    DBOSDataSource,
)
from dbos_sdk._datasource._records import (
    PGIsolationLevel,
    PGTransactionConfig,
    TransactionCheckpoint,
    TransactionConfig,
    TransactionRetryPolicy,
)
from dbos_sdk._datasource._register import (
    register_data_source,
    register_transaction,
    register_transaction_async,
    run_transaction,
    run_transaction_async,
)
from dbos_sdk.errors import (
    DBOSCheckpointSchemaError,
    DBOSDataSourceError,
    DBOSNestedTransactionError,
    DBOSNotInTransactionError,
    DBOSTransactionRetriesExceededError,
)

__all__ = [
    "CHECKPOINT_TABLE",
    "AsyncDBOSDataSource",
    "AsyncDataSource",
    "AsyncDataSourceTransactionHandler",
    "BackgroundLoop",
    "DBOSCheckpointSchemaError",
    "DBOSDataSource",
    "DBOSDataSourceError",
    "DBOSNestedTransactionError",
    "DBOSNotInTransactionError",
    "DBOSTransactionRetriesExceededError",
    "DataSourceTransactionHandler",
    "PGIsolationLevel",
    "PGTransactionConfig",
    "SyncDataSource",
    "SyncTransactionDecorator",
    "TransactionCheckpoint",
    "TransactionConfig",
    "TransactionRetryPolicy",
    "TransactionStep",
    "check_pg_schema_name",
    "create_transaction_completion_schema_pg",
    "create_transaction_completion_table_pg",
    "current_transaction_step",
    "get_pg_error_code",
    "is_pg_key_conflict_error",
    "is_pg_retriable_transaction_error",
    "pg_commit_with_checkpoint",
    "pg_commit_with_checkpoint_async",
    "pg_ensure_checkpoint_schema",
    "pg_ensure_checkpoint_schema_async",
    "pg_insert_checkpoint_if_absent",
    "pg_insert_checkpoint_if_absent_async",
    "pg_install_checkpoint_schema",
    "pg_install_checkpoint_schema_async",
    "pg_read_checkpoint",
    "pg_read_checkpoint_async",
    "register_data_source",
    "register_transaction",
    "register_transaction_async",
    "run_transaction",
    "run_transaction_async",
]
