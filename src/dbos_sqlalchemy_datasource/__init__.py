"""SQLAlchemy 2 datasource for dbos-sdk: transactions on PostgreSQL (over psycopg 3) with an
ORM ``Session`` (:class:`SQLAlchemyDataSource`) or ``AsyncSession``
(:class:`AsyncSQLAlchemyDataSource`).

Built on the public API only (``dbos_sdk``, ``dbos_sdk.datasource``, ``dbos_sdk.errors``).
Checkpointing is optimistic on a workflow's first execution and pessimistic when the
workflow may have run before (see :mod:`dbos_sdk.datasource`). The session is flushed,
then the checkpoint insert and the commit go to the server in one round trip.
"""

from dbos_sqlalchemy_datasource._async import AsyncSQLAlchemyDataSource
from dbos_sqlalchemy_datasource._common import SQLAlchemyTransactionConfig
from dbos_sqlalchemy_datasource._sync import SQLAlchemyDataSource

__all__ = ["AsyncSQLAlchemyDataSource", "SQLAlchemyDataSource", "SQLAlchemyTransactionConfig"]
