"""Datasource speed: sequential transaction workflows/s (one INSERT each) on each of our
five datasources, beside the floor (the same INSERT committed by raw psycopg / sqlite3)
and beside dbos 3.4.0's SQLAlchemy datasource transaction of the same kind (sync, or
async for our async datasources) on the same server, all in the same run; then the
datasource round trips each transaction step costs beyond its own INSERT, counted by
libpq's protocol trace of the datasource's connections.

    .venv/bin/python benchmarks/bench_datasource.py [--kind psycopg ...] [--quick]

Postgres runs use a fresh database ``bench_dbos_ds`` (dropped afterwards) holding both the
system database and the application tables; SQLite runs use temp files. dbos runs in its
own process on its own fresh databases (benchmarks/peer/dbos_peer.py, scenarios "tx" and
"tx_async"), once before our runs on that database and once after; its figure is the
mean of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import sqlalchemy as sa
from psycopg import sql

from _common import DEFAULT_PG_URL, floor_commits_per_s, print_line, run_peer
from dbos_psycopg_datasource import AsyncPsycopgDataSource, PsycopgDataSource
from dbos_sdk import DBOS, DBOSConfig
from dbos_sqlalchemy_datasource import AsyncSQLAlchemyDataSource, SQLAlchemyDataSource
from dbos_sqlite_datasource import SQLiteDataSource

BENCH_DB = "bench_dbos_ds"
WARMUP = 20
MIN_PEER_RATIO = 5.0
MAX_EXTRA_ROUND_TRIPS = 2.0
KINDS = ("psycopg", "psycopg-async", "sqlalchemy", "sqlalchemy-async", "sqlite")


@dataclass(frozen=True, slots=True)
class Sizes:
    n: int
    repeat: int
    floor: int
    traced: int


FULL = Sizes(n=500, repeat=3, floor=1000, traced=100)
QUICK = Sizes(n=100, repeat=1, floor=300, traced=30)


def _url_for(base: str, database: str) -> str:
    p = urlsplit(base)
    return urlunsplit((p.scheme, p.netloc, "/" + database, p.query, p.fragment))


@contextlib.contextmanager
def bench_database(admin_url: str) -> Generator[str]:
    name = sql.Identifier(BENCH_DB)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield _url_for(admin_url, BENCH_DB)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


class Trace:
    """libpq protocol traces of the datasource's connections, in one file: every simple
    Query and every Sync the client sends waits for the server, so each is a round trip."""

    def __init__(self) -> None:
        fd, name = tempfile.mkstemp(prefix="bench_ds_trace_")
        self.fd, self.path = fd, Path(name)

    def attach(self, pgconn: Any) -> None:
        pgconn.trace(self.fd)

    def on_connect(self, dbapi: Any, _record: Any) -> None:
        """SQLAlchemy "connect" listener: trace the new (sync or async) connection."""
        self.attach(getattr(dbapi, "driver_connection", dbapi).pgconn)

    def mark(self) -> int:
        return self.path.stat().st_size

    def round_trips_since(self, mark: int) -> int:
        with self.path.open("rb") as f:
            f.seek(mark)
            lines = f.read().decode(errors="replace").splitlines()
        sent = [ln.split("\t")[3] for ln in lines if "\tF\t" in ln and ln.count("\t") >= 3]
        return sum(1 for kind in sent if kind in ("Query", "Sync"))

    def close(self) -> None:
        os.close(self.fd)
        self.path.unlink()


@dataclass
class Bench:
    """One datasource with its transaction workflow, on a launched runtime."""

    call: Callable[[int], int]
    count_rows: Callable[[], int]
    run_batch: Callable[[int, int], float]


@contextlib.contextmanager
def launched(kind: str, bench_url: str | None, trace: Trace | None) -> Generator[Bench]:
    """Our runtime and one ``kind`` datasource on fresh databases, with a workflow that
    runs one transaction inserting one row."""
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_ds_"))
        name = f"bench-{uuid.uuid4().hex[:6]}"
        if kind == "sqlite":
            DBOS(DBOSConfig("bench-ds", system_database_url=f"sqlite:///{tmp}/sys.sqlite"))
            ds: Any = SQLiteDataSource(name, Path(tmp) / "app.sqlite")
            table = "bench_tx"
            ds.install_checkpoint_schema()
            with contextlib.closing(sqlite3.connect(ds.path)) as conn:
                conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v INT)")
                conn.commit()
        else:
            assert bench_url is not None
            schema = f"app_{uuid.uuid4().hex[:10]}"
            table = f'"{schema}".bench_tx'
            with psycopg.connect(bench_url, autocommit=True) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')  # type: ignore[arg-type]
                conn.execute(f"CREATE TABLE {table} (id SERIAL PRIMARY KEY, v INT)")  # type: ignore[arg-type]
            stack.callback(_drop_schemas, bench_url, schema, f"sys_{schema}")
            DBOS(
                DBOSConfig(
                    "bench-ds", system_database_url=bench_url, postgres_schema=f"sys_{schema}"
                )
            )
            ds = _pg_datasource(kind, name, bench_url, schema, trace)
        insert_pg = f"INSERT INTO {table} (v) VALUES (%s)"
        insert_sa = sa.text(f"INSERT INTO {table} (v) VALUES (:v)")
        bench = _define(kind, ds, insert_pg, insert_sa, lambda: _count(kind, ds, bench_url, table))
        DBOS.launch()
        stack.callback(DBOS.shutdown)
        yield bench


def _pg_datasource(kind: str, name: str, url: str, schema: str, trace: Trace | None) -> Any:
    if kind == "psycopg":
        configure = {"configure": lambda c: trace.attach(c.pgconn)} if trace else {}
        return PsycopgDataSource(name, url, schema=schema, pool_kwargs=configure)
    if kind == "psycopg-async":

        async def aconfigure(c: Any) -> None:
            assert trace is not None
            trace.attach(c.pgconn)

        configure = {"configure": aconfigure} if trace else {}
        return AsyncPsycopgDataSource(name, url, schema=schema, pool_kwargs=configure)
    if trace is not None:  # every engine's new connections (the datasource creates its own)
        sa.event.listen(sa.Engine, "connect", trace.on_connect)
    if kind == "sqlalchemy":
        return SQLAlchemyDataSource(name, url, schema=schema)
    return AsyncSQLAlchemyDataSource(name, url, schema=schema)


def _drop_schemas(url: str, *schemas: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for s in schemas:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(s)))


def _define(
    kind: str, ds: Any, insert_pg: str, insert_sa: Any, count_rows: Callable[[], int]
) -> Bench:
    """The transaction and workflow of ``kind``, as a user writes them."""
    tag = uuid.uuid4().hex[:6]
    if kind in ("psycopg", "sqlite"):
        stmt = insert_pg if kind == "psycopg" else insert_pg.replace("%s", "?")

        @ds.transaction(name=f"insert_row_{tag}")
        def insert_row(v: int) -> int:
            ds.client.execute(stmt, (v,))
            return v

    elif kind == "sqlalchemy":

        @ds.transaction(name=f"insert_row_{tag}")
        def insert_row(v: int) -> int:
            ds.client.execute(insert_sa, {"v": v})
            return v

    elif kind == "psycopg-async":

        @ds.transaction(name=f"insert_row_{tag}")
        async def ainsert_row(v: int) -> int:
            await ds.client.execute(insert_pg, (v,))
            return v

    else:

        @ds.transaction(name=f"insert_row_{tag}")
        async def ainsert_row(v: int) -> int:
            await ds.client.execute(insert_sa, {"v": v})
            return v

    if kind.endswith("-async"):

        @DBOS.workflow(name=f"tx_wf_{tag}")
        async def atx_wf(v: int) -> int:
            return await ainsert_row(v)

        def run_batch(start: int, n: int) -> float:
            async def batch() -> float:
                t0 = time.perf_counter()
                for i in range(start, start + n):
                    assert await atx_wf(i) == i
                return n / (time.perf_counter() - t0)

            return asyncio.run(batch())

        call: Callable[[int], int] = lambda v: asyncio.run(atx_wf(v))  # noqa: E731
    else:

        @DBOS.workflow(name=f"tx_wf_{tag}")
        def tx_wf(v: int) -> int:
            return insert_row(v)

        def run_batch(start: int, n: int) -> float:
            t0 = time.perf_counter()
            for i in range(start, start + n):
                assert tx_wf(i) == i
            return n / (time.perf_counter() - t0)

        call = tx_wf

    return Bench(call, count_rows, run_batch)


def _count(kind: str, ds: Any, bench_url: str | None, table: str) -> int:
    """Rows in the bench table, read outside DBOS."""
    if kind == "sqlite":
        with contextlib.closing(sqlite3.connect(ds.path)) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    assert bench_url is not None
    with psycopg.connect(bench_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[arg-type]
        assert row is not None
        return int(row[0])


def measure(kind: str, bench_url: str | None, sizes: Sizes) -> float:
    with launched(kind, bench_url, None) as bench:
        for i in range(WARMUP):
            bench.call(-1 - i)
        rates = [bench.run_batch(k * sizes.n, sizes.n) for k in range(sizes.repeat)]
        assert bench.count_rows() == WARMUP + sizes.n * sizes.repeat, "one row per transaction"
        return statistics.median(rates)


def extra_round_trips(kind: str, bench_url: str, sizes: Sizes, trace: Trace) -> float:
    """Datasource round trips per transaction step beyond its one INSERT."""
    try:
        with launched(kind, bench_url, trace) as bench:
            for i in range(WARMUP):
                bench.call(-1 - i)
            mark = trace.mark()
            bench.run_batch(0, sizes.traced)
            return trace.round_trips_since(mark) / sizes.traced - 1
    finally:
        if sa.event.contains(sa.Engine, "connect", trace.on_connect):
            sa.event.remove(sa.Engine, "connect", trace.on_connect)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--kind", choices=KINDS, action="append")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL, help="an admin URL of the server")
    p.add_argument("--quick", action="store_true", help="small sizes, one batch")
    args = p.parse_args()
    sizes = QUICK if args.quick else FULL
    kinds: list[str] = args.kind or list(KINDS)
    print(
        f"sequential transaction workflows, one INSERT each: {sizes.n} per batch, "
        f"median of {sizes.repeat}; targets: >= {MIN_PEER_RATIO:g}x dbos, <= "
        f"{MAX_EXTRA_ROUND_TRIPS:g} round trips per step beyond the INSERT",
        flush=True,
    )
    trace = Trace()  # closed last: no traced connection may outlive its file descriptor
    with contextlib.ExitStack() as stack:
        stack.callback(trace.close)
        bench_url = stack.enter_context(bench_database(args.pg_url))
        for db in ("postgres", "sqlite"):
            db_kinds = [k for k in kinds if (k == "sqlite") == (db == "sqlite")]
            if db_kinds:
                run_db(db, db_kinds, bench_url, args.pg_url, sizes, trace)


def peer_rate(db: str, scenario: str, pg_url: str, sizes: Sizes) -> float | None:
    peer = run_peer(db, scenario, sizes.n, pg_url, sizes.repeat)
    if peer.get("reason"):
        print(f"    dbos {scenario} ({db}): {peer['reason']}", flush=True)
    value = peer["value"]
    return float(value) if value is not None else None


def peer_scenario(kind: str) -> str:
    """dbos's transaction of the same kind: its AsyncSQLAlchemyDatasource (an ``async def``
    transaction in an async workflow) beside our async datasources, its sync
    SQLAlchemyDatasource beside the others."""
    return "tx_async" if kind.endswith("-async") else "tx"


def run_db(
    db: str, kinds: list[str], bench_url: str, pg_url: str, sizes: Sizes, trace: Trace
) -> None:
    """Our kinds on ``db``, between two runs of dbos on the same server (the machine may be
    shared: the peer figure is the mean of the run before ours and the run after). Async
    kinds are compared with dbos's async transaction; their ratio to its sync one is shown
    too."""
    scenarios = [
        "tx",
        *(["tx_async"] if any(peer_scenario(k) == "tx_async" for k in kinds) else []),
    ]
    before = {s: peer_rate(db, s, pg_url, sizes) for s in scenarios}
    measured: list[tuple[str, float, float, float | None]] = []
    for kind in kinds:
        floor = floor_commits_per_s(db, bench_url, sizes.floor)
        ours = measure(kind, None if db == "sqlite" else bench_url, sizes)
        extra = extra_round_trips(kind, bench_url, sizes, trace) if db == "postgres" else None
        measured.append((kind, ours, floor, extra))
    after = {s: peer_rate(db, s, pg_url, sizes) for s in scenarios}
    peers: dict[str, float | None] = {}
    for s in scenarios:
        known = [r for r in (before[s], after[s]) if r is not None]
        peers[s] = statistics.mean(known) if known else None
        if before[s] is not None and after[s] is not None:
            print(
                f"    dbos-{db} {s}: {before[s]:.1f} wf/s before ours, {after[s]:.1f} after",
                flush=True,
            )
    for kind, ours, floor, extra in measured:
        notes: list[str] = []
        peer = peers[peer_scenario(kind)]
        if peer:
            met = ours / peer >= MIN_PEER_RATIO
            notes.append(f"5x target {'met' if met else 'MISSED'}")
        sync_peer = peers["tx"]
        if peer_scenario(kind) == "tx_async" and sync_peer:
            notes.append(f"{ours / sync_peer:.2f}x dbos's sync transaction")
        if extra is not None:
            ok = extra <= MAX_EXTRA_ROUND_TRIPS + 1e-9
            notes.append(f"{extra:.2f} round trips beyond the INSERT ({'ok' if ok else 'OVER'})")
        label = f"tx wf {kind}" + (" (vs dbos async)" if peer_scenario(kind) == "tx_async" else "")
        print_line(label, db, ours, "wf/s", floor=floor, peer=peer, note="; ".join(notes))


if __name__ == "__main__":
    sys.exit(main())
