"""Peer benchmark: the real `dbos` package (3.4.0) on the same databases as our SDK.

Run with the peer venv's python (benchmarks/_common.py builds it), not the repo venv:

    .bench/dbos-3.4.0/bin/python benchmarks/peer/dbos_peer.py \
        --db postgres --scenario wf1 --n 500 --pg-url postgresql://postgres@127.0.0.1:5432/postgres

With ``--repeat k`` a sequential scenario times k batches of n and reports their median
(and every batch's rate under "batches"); the queue drain is always one batch.
Prints exactly one JSON line on stdout; everything else (dbos's own logging) goes to stderr.
dbos runs with its defaults, as a user would get them, except that logging is turned down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Generator
from typing import Any

import psycopg
import sqlalchemy as sa
from dbos import DBOS, AsyncSQLAlchemyDatasource, DBOSConfig, SQLAlchemyDatasource
from psycopg import sql

SCENARIOS = ("wf1", "wf10", "queue_drain", "tx", "tx_async")
# Per process: several benchmark scripts may run dbos at once on one server.
SYS_DB = f"bench_dbos_peer_sys_{os.getpid()}"
APP_DB = f"bench_dbos_peer_app_{os.getpid()}"
WARMUP = 5


@DBOS.step()
def add_one(x: int) -> int:
    return x + 1


@DBOS.workflow()
def wf1(x: int) -> int:
    return add_one(x)


@DBOS.workflow()
def wf10(x: int) -> int:
    for _ in range(10):
        x = add_one(x)
    return x


def _pg_url(base: str, database: str) -> str:
    url = sa.make_url(base).set(drivername="postgresql", database=database)
    return url.render_as_string(hide_password=False)


def _drop_pg_databases(base: str, *names: str, recreate: bool = False) -> None:
    with psycopg.connect(_pg_url(base, "postgres"), autocommit=True) as conn:
        for name in names:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            if recreate:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@contextlib.contextmanager
def _databases(db: str, pg_base: str) -> Generator[tuple[str, str]]:
    """Fresh (system_database_url, application_database_url) for this run."""
    if db == "sqlite":
        with tempfile.TemporaryDirectory(prefix="dbos_peer_") as tmp:
            yield f"sqlite:///{tmp}/dbos_sys.sqlite", f"sqlite:///{tmp}/app.sqlite"
        return
    _drop_pg_databases(pg_base, SYS_DB, APP_DB, recreate=True)
    try:
        yield _pg_url(pg_base, SYS_DB), _pg_url(pg_base, APP_DB)
    finally:
        _drop_pg_databases(pg_base, SYS_DB, APP_DB)


def _time_sequential(fn: Callable[[int], Any], n: int, repeat: int) -> list[float]:
    """Rates of ``repeat`` back-to-back batches of ``n`` calls, after a warm-up."""
    for i in range(WARMUP):
        fn(i)
    rates: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        rates.append(n / (time.perf_counter() - start))
    return rates


def _tx_workflow(app_url: str) -> tuple[Callable[[int], int], Callable[[], int]]:
    """The transaction workflow and a row counter for it.

    dbos 3.x has no application database: transactions run on a datasource, and
    `@ds.transaction()` takes the place of `@DBOS.transaction()`. Must run before launch."""
    ds = SQLAlchemyDatasource.create(app_url)
    pk = "INTEGER PRIMARY KEY" if app_url.startswith("sqlite") else "SERIAL PRIMARY KEY"
    with ds.engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE bench_tx (id {pk}, v INT)"))

    @ds.transaction()
    def insert_row(v: int) -> int:
        ds.sql_session().execute(sa.text("INSERT INTO bench_tx (v) VALUES (:v)"), {"v": v})
        return v

    @DBOS.workflow()
    def tx_wf(v: int) -> int:
        return insert_row(v)

    def count_rows() -> int:
        with ds.engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM bench_tx")).scalar_one())

    return tx_wf, count_rows


async def _tx_async(config: DBOSConfig, app_url: str, n: int, repeat: int) -> list[float]:
    """The async twin of the transaction scenario, in one event loop (an async engine's
    connections belong to the loop that opened them): dbos's AsyncSQLAlchemyDatasource,
    an ``async def`` transaction and an async workflow."""
    ds = await AsyncSQLAlchemyDatasource.create(app_url)
    async with ds.engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE bench_tx (id SERIAL PRIMARY KEY, v INT)"))

    @ds.transaction()
    async def insert_row(v: int) -> int:
        await ds.sql_session().execute(sa.text("INSERT INTO bench_tx (v) VALUES (:v)"), {"v": v})
        return v

    @DBOS.workflow()
    async def tx_wf(v: int) -> int:
        return await insert_row(v)

    DBOS(config=config)
    DBOS.launch()
    try:
        for i in range(WARMUP):
            await tx_wf(i)
        rates: list[float] = []
        for _ in range(repeat):
            start = time.perf_counter()
            for i in range(n):
                await tx_wf(i)
            rates.append(n / (time.perf_counter() - start))
        async with ds.engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT count(*) FROM bench_tx"))).scalar_one()
        assert rows == WARMUP + n * repeat, "transactions did not insert one row each"
        return rates
    finally:
        DBOS.destroy()


def _queue_drain(n: int) -> float:
    q = DBOS.register_queue("bench_q")
    for h in [q.enqueue(wf1, i) for i in range(WARMUP)]:
        h.get_result()
    start = time.perf_counter()
    handles = [q.enqueue(wf1, i) for i in range(n)]
    results = [h.get_result() for h in handles]
    rate = n / (time.perf_counter() - start)
    assert results == [i + 1 for i in range(n)], "queued workflows returned wrong results"
    return rate


def run(db: str, scenario: str, n: int, pg_base: str, repeat: int = 1) -> list[float]:
    """The rate of each timed batch (one for the queue drain)."""
    with _databases(db, pg_base) as (sys_url, app_url):
        config: DBOSConfig = {
            "name": "bench-dbos-peer",
            "system_database_url": sys_url,
            "log_level": "WARNING",
        }
        if scenario == "tx_async":
            if db != "postgres":
                raise ValueError("tx_async runs on Postgres only (as our async datasources)")
            return asyncio.run(_tx_async(config, app_url, n, repeat))
        tx = _tx_workflow(app_url) if scenario == "tx" else None
        DBOS(config=config)
        DBOS.launch()
        try:
            if scenario == "wf1":
                return _time_sequential(wf1, n, repeat)
            if scenario == "wf10":
                return _time_sequential(wf10, n, repeat)
            if scenario == "queue_drain":
                return [_queue_drain(n)]
            assert tx is not None
            tx_wf, count_rows = tx
            rates = _time_sequential(tx_wf, n, repeat)
            assert count_rows() == WARMUP + n * repeat, "transactions did not insert one row each"
            return rates
        finally:
            DBOS.destroy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--db", choices=("sqlite", "postgres"), required=True)
    p.add_argument("--scenario", choices=SCENARIOS, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--repeat", type=int, default=1, help="timed batches (median reported)")
    args = p.parse_args()

    out = sys.stdout
    batches: list[float] = []
    reason: str | None = None
    # Anything dbos (or a library under it) prints must not corrupt the one JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            batches = run(args.db, args.scenario, args.n, args.pg_url, args.repeat)
        except Exception as e:
            # A failed peer run is a null figure with its reason, not a crashed benchmark.
            traceback.print_exc()
            reason = f"{type(e).__name__}: {e}"
    value = statistics.median(batches) if batches else None
    result = {"scenario": args.scenario, "db": args.db, "value": value, "unit": "wf/s"}
    result |= {"n": args.n, "batches": batches} | ({"reason": reason} if reason else {})
    out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
