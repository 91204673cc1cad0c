"""MariaDB datasource speed: sequential transactions (one INSERT each) beside the floor
(the same INSERT committed by raw PyMySQL in an explicit transaction), alone and as
workflow steps, and the statements (= round trips) the datasource adds per transaction
step, counted by the server (``Questions``, global, so run it on an idle server).

    .venv/bin/python benchmarks/bench_mariadb.py [--url mariadb://root@127.0.0.1:3306/test] [--quick]

Runs on a fresh database ``bench_dbos_maria_<pid>`` (dropped afterwards); the system
database is a SQLite file, so the workflow figure is the engine's SQLite rate plus the
MariaDB transaction. dbos 3.4.0 has no MariaDB datasource, so there is no peer figure.
"""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql

from _common import print_line
from dbos_mariadb_datasource import MariaDBDataSource
from dbos_sdk import DBOS, DBOSConfig

WARMUP = 20


def server_kwargs(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
    }


@contextlib.contextmanager
def bench_database(url: str) -> Generator[tuple[dict[str, Any], str]]:
    """A fresh database with the bench table; yields (connect kwargs, datasource URL)."""
    kw = server_kwargs(url)
    db = f"bench_dbos_maria_{os.getpid()}"
    admin = pymysql.connect(**kw, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}`")
            cur.execute(f"CREATE TABLE `{db}`.bench_tx (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        auth = kw["user"] + (f":{kw['password']}" if kw["password"] else "")
        yield {**kw, "database": db}, f"mariadb://{auth}@{kw['host']}:{kw['port']}/{db}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute(f"DROP DATABASE IF EXISTS `{db}_ck`")
        admin.close()


def rate(op: Callable[[int], object], n: int, start: int = 0) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + n):
        op(i)
    return n / (time.perf_counter() - t0)


def floor(kw: dict[str, Any], n: int) -> float:
    """Raw PyMySQL: START TRANSACTION, INSERT, COMMIT -- the least a durable write costs."""
    conn = pymysql.connect(**kw, autocommit=True)
    try:
        with conn.cursor() as cur:

            def commit_one(i: int) -> None:
                cur.execute("START TRANSACTION")
                cur.execute("INSERT INTO bench_tx (v) VALUES (%s)", (i,))
                conn.commit()

            rate(commit_one, WARMUP, -WARMUP)
            return rate(commit_one, n)
    finally:
        conn.close()


def questions(kw: dict[str, Any]) -> int:
    conn = pymysql.connect(**kw)
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
            row = cur.fetchone()
            assert row is not None
            return int(row[1])
    finally:
        conn.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", default="mariadb://root@127.0.0.1:3306/test")
    p.add_argument("--quick", action="store_true", help="100 per batch, one batch")
    args = p.parse_args()
    n, repeat = (100, 1) if args.quick else (500, 3)
    print(f"sequential transactions, one INSERT each: {n} per batch, median of {repeat}")
    with bench_database(args.url) as (kw, url), tempfile.TemporaryDirectory() as tmp:
        DBOS(DBOSConfig("bench-maria", system_database_url=f"sqlite:///{tmp}/sys.sqlite"))
        ds = MariaDBDataSource(
            f"bench-{uuid.uuid4().hex[:6]}", url, database=f"{kw['database']}_ck"
        )

        @ds.transaction(name="insert_row")
        def insert_row(v: int) -> int:
            with ds.client.cursor() as cur:
                cur.execute("INSERT INTO bench_tx (v) VALUES (%s)", (v,))
            return v

        @DBOS.workflow(name="tx_wf")
        def tx_wf(v: int) -> int:
            return insert_row(v)

        DBOS.launch()
        try:
            rate(tx_wf, WARMUP, -2 * WARMUP)
            rate(insert_row, WARMUP, -WARMUP)
            floors, alone, steps = [], [], []
            for k in range(repeat):
                floors.append(floor(kw, n))
                alone.append(rate(insert_row, n, (2 * k) * n))
                steps.append(rate(tx_wf, n, (2 * k + 1) * n))
            # Statements per step: the datasource's besides the INSERT; the probe itself is 1.
            before = questions(kw)
            rate(tx_wf, n, 2 * repeat * n)
            extra = (questions(kw) - before - 1) / n - 1
        finally:
            DBOS.shutdown()
    fl = statistics.median(floors)
    print_line("tx alone", "mariadb", statistics.median(alone), "tx/s", floor=fl)
    print_line(
        "tx wf (sqlite sys)",
        "mariadb",
        statistics.median(steps),
        "wf/s",
        floor=fl,
        note=f"{extra:.2f} statements beyond the INSERT per step (no dbos peer for MariaDB)",
    )


if __name__ == "__main__":
    sys.exit(main())
