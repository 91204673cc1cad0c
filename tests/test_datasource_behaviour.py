"""Datasource behaviour beyond the conformance suite.

The method of operation itself -- exactly once across a SIGKILL between the datasource
commit and the step record, duplicate executions, error replay, the retry bound, conflicts,
lost connections, read-only, isolation and begin modes, outside a workflow, lifecycle, the
checkpoint-table check -- is proved once for all five datasources by
test_datasource_conformance.py (dbos_sdk.testing.DataSourceConformance over the kits in
children/ds_kits.py). What is here is particular to this repository's datasources.
"""

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from dbos_psycopg_datasource import AsyncPsycopgDataSource, PsycopgDataSource
from dbos_sdk import DBOS, DBOSConfig, SetWorkflowID
from dbos_sdk.datasource import TransactionRetryPolicy
from dbos_sdk.errors import DBOSNotInTransactionError, DBOSTransactionRetriesExceededError
from dbos_sqlalchemy_datasource import AsyncSQLAlchemyDataSource, SQLAlchemyDataSource
from dbos_sqlite_datasource import SQLiteDataSource

NOWHERE = "postgresql://postgres@127.0.0.1:1/never-connected"


def test_client_outside_a_transaction_says_where_to_read_it(tmp_path: Path) -> None:
    made: list[Any] = [
        PsycopgDataSource("c-pg", NOWHERE),
        AsyncPsycopgDataSource("c-apg", NOWHERE),
        SQLAlchemyDataSource("c-sa", NOWHERE),
        AsyncSQLAlchemyDataSource("c-asa", NOWHERE),
        SQLiteDataSource("c-lite", tmp_path / "app.sqlite"),
    ]
    for ds in made:
        with pytest.raises(
            DBOSNotInTransactionError, match=r"outside one of its transactions"
        ) as e:
            _ = ds.client
        assert f"{type(ds).__name__}({ds.name!r})" in str(e.value)
        assert "@ds.transaction()" in str(e.value)


def test_sqlite_a_busy_begin_is_retried_up_to_the_bound_without_running_the_body(
    tmp_path: Path,
) -> None:
    """The conformance suite's retry-bound check fails inside the body; here the write lock
    is held by another connection throughout, so BEGIN IMMEDIATE itself is busy each time."""
    path = tmp_path / "app.sqlite"
    DBOS(DBOSConfig("ds-busy", system_database_url=f"sqlite:///{tmp_path}/sys.sqlite"))
    ds = SQLiteDataSource(
        f"lite-{uuid.uuid4().hex[:6]}",
        path,
        busy_timeout_s=0,
        retry=TransactionRetryPolicy(max_attempts=3, max_elapsed_s=None),
    )
    runs: list[str] = []

    @ds.transaction(name="always_busy")
    def write(v: str) -> None:
        runs.append(v)
        ds.client.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")

    @DBOS.workflow()
    def wf(v: str) -> None:
        write(v)

    DBOS.launch()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with SetWorkflowID("bound"), pytest.raises(DBOSTransactionRetriesExceededError) as caught:
            wf("x")
        assert caught.value.attempts == 3
        assert "retriable" in str(caught.value) and "max_attempts" in str(caught.value)
        assert runs == []  # BEGIN IMMEDIATE was busy on every attempt
        # The named error is the step's recorded outcome: replayed, not retried again.
        with SetWorkflowID("bound"), pytest.raises(DBOSTransactionRetriesExceededError):
            wf("x")
        assert runs == []
    finally:
        holder.close()
