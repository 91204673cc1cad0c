"""psycopg 3 datasource for dbos-sdk: transactions on PostgreSQL through a psycopg_pool
pool, sync (:class:`PsycopgDataSource`) and async (:class:`AsyncPsycopgDataSource`).

Built on the public API only (``dbos_sdk``, ``dbos_sdk.datasource``, ``dbos_sdk.errors``).
Checkpointing is optimistic on a workflow's first execution and pessimistic when the
workflow may have run before (see :mod:`dbos_sdk.datasource`); each transaction costs two
round trips besides the function's own statements: ``BEGIN ...`` and one
``INSERT <checkpoint>; COMMIT``.
"""

from dbos_psycopg_datasource._async import AsyncPsycopgDataSource
from dbos_psycopg_datasource._common import PsycopgTransactionConfig
from dbos_psycopg_datasource._sync import PsycopgDataSource

__all__ = ["AsyncPsycopgDataSource", "PsycopgDataSource", "PsycopgTransactionConfig"]
