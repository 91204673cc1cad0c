"""MariaDB datasource for dbos-sdk: transactions on MariaDB (or MySQL) through PyMySQL,
a small pool of connections each serving one transaction at a time.

Built on the public API only (``dbos_sdk``, ``dbos_sdk.datasource``, ``dbos_sdk.errors``).
Checkpointing is optimistic on a workflow's first execution (the checkpoint ``INSERT``
right before ``COMMIT``; a duplicate key means another execution committed the step first)
and pessimistic when the workflow may have run before (see :mod:`dbos_sdk.datasource`).
Deadlocks (1213), lock wait timeouts (1205) and lost connections are retried with the
API's backoff.
"""

from dbos_mariadb_datasource._connections import MariaDBPoolTimeoutError
from dbos_mariadb_datasource._datasource import MariaDBDataSource
from dbos_mariadb_datasource._records import MariaDBIsolationLevel, MariaDBTransactionConfig
from dbos_mariadb_datasource._sql import (
    MARIADB_CHECKPOINT_TABLE,
    WORKFLOW_ID_MAX_BYTES,
    create_transaction_completion_database_mariadb,
    create_transaction_completion_table_mariadb,
    get_mariadb_error_code,
    is_mariadb_key_conflict_error,
    is_mariadb_retriable_error,
)

__all__ = [
    "MARIADB_CHECKPOINT_TABLE",
    "WORKFLOW_ID_MAX_BYTES",
    "MariaDBDataSource",
    "MariaDBIsolationLevel",
    "MariaDBPoolTimeoutError",
    "MariaDBTransactionConfig",
    "create_transaction_completion_database_mariadb",
    "create_transaction_completion_table_mariadb",
    "get_mariadb_error_code",
    "is_mariadb_key_conflict_error",
    "is_mariadb_retriable_error",
]
