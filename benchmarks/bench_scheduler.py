"""Scheduler benchmark: lag from a tick's scheduled time to the start of its workflow.

    .venv/bin/python benchmarks/bench_scheduler.py [--db sqlite|postgres] [--seconds 20]
        [--functions 5] [--pg-url postgresql://postgres@127.0.0.1:5432/postgres] [--no-peer]

``--functions`` workflows are each scheduled every second (``* * * * * *``) for
``--seconds`` seconds; every workflow records ``time.time() - scheduled_time`` when its
body starts (the first tick of each is a warm-up and not counted). One line per database:
p50 and p99 of that lag, then the same figures for

- the timer floor: a bare thread waking at each whole second with ``Event.wait`` in the
  same process and the same run (no scheduler can start a workflow sooner), and
- dbos 3.4.0 (``DBOS.create_schedule``, same workflows and schedule), run in the peer
  venv that benchmarks/_common.py builds; its scheduler adds up to 10% jitter and goes
  through its internal queue, so its lag is expected to be larger.

Each measurement runs in a child process (this same file, ``--worker ours|peer``), so
the runs do not share a registry and the peer imports only ``dbos``.
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CRON = "* * * * * *"


# --- figures ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _ms(values: list[float] | None) -> str:
    if not values:
        return f"{'n/a':>16}"
    return (
        f"p50 {percentile(values, 50) * 1000:7.1f} ms  p99 {percentile(values, 99) * 1000:7.1f} ms"
    )


def _timer_floor(stop: threading.Event, out: list[float]) -> None:
    """Wake at each whole second, as a scheduler thread would, and record how late."""
    wake = threading.Event()
    while not stop.is_set():
        target = float(int(time.time()) + 1)
        while (remaining := target - time.time()) > 0:
            if stop.is_set():
                return
            wake.wait(remaining)
        out.append(time.time() - target)


# --- workers (child processes) ---------------------------------------------------------------


@contextlib.contextmanager
def _pg_schema(pg_url: str, schema: str) -> Generator[None, None, None]:
    import psycopg

    try:
        yield
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def worker_ours(db: str, seconds: float, functions: int, pg_url: str) -> dict[str, Any]:
    from dbos_sdk import DBOS, DBOSConfig

    lags: dict[int, list[float]] = {i: [] for i in range(functions)}

    def define(i: int) -> None:
        @DBOS.scheduled(CRON, mode="when_active")
        @DBOS.workflow(name=f"bench_tick_{i}")
        def tick(scheduled_time: datetime, actual_time: datetime) -> None:
            lags[i].append(time.time() - scheduled_time.timestamp())

    for i in range(functions):
        define(i)
    floor: list[float] = []
    stop = threading.Event()
    with contextlib.ExitStack() as stack:
        if db == "sqlite":
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_sched_"))
            config = DBOSConfig("bench-sched", system_database_url=f"sqlite:///{tmp}/sys.sqlite")
        else:
            schema = f"bench_sched_{os.getpid()}"
            stack.enter_context(_pg_schema(pg_url, schema))
            config = DBOSConfig("bench-sched", system_database_url=pg_url, postgres_schema=schema)
        DBOS(config)
        DBOS.launch()
        floor_thread = threading.Thread(target=_timer_floor, args=(stop, floor), daemon=True)
        floor_thread.start()
        try:
            time.sleep(seconds + 1.5)  # + the warm-up tick
        finally:
            stop.set()
            DBOS.shutdown()
            floor_thread.join()
    return {"lags": [x for v in lags.values() for x in v[1:]], "floor": floor[1:]}


def worker_peer(db: str, seconds: float, functions: int, pg_url: str) -> dict[str, Any]:
    from dbos import DBOS  # the peer venv's dbos 3.4.0

    lags: dict[int, list[float]] = {i: [] for i in range(functions)}

    def define(i: int) -> Callable[[datetime, Any], None]:
        @DBOS.workflow(name=f"bench_tick_{i}")
        def tick(scheduled_at: datetime, context: Any) -> None:
            lags[i].append(time.time() - scheduled_at.timestamp())

        return tick

    workflows = [define(i) for i in range(functions)]
    with contextlib.ExitStack() as stack:
        if db == "sqlite":
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_sched_peer_"))
            url = f"sqlite:///{tmp}/sys.sqlite"
        else:
            url = stack.enter_context(_pg_database(pg_url, "bench_sched_peer_sys"))
        config: Any = {
            "name": "bench-sched-peer",
            "system_database_url": url,
            "log_level": "WARNING",
            "scheduler_polling_interval_sec": 0.2,
        }
        DBOS(config=config)
        DBOS.launch()
        try:
            for i, wf in enumerate(workflows):
                DBOS.create_schedule(schedule_name=f"bench-{i}", workflow_fn=wf, schedule=CRON)
            end = time.monotonic() + 30
            while not all(lags.values()) and time.monotonic() < end:
                time.sleep(0.05)
            for v in lags.values():
                v.clear()
            time.sleep(seconds)
        finally:
            DBOS.destroy()
    return {"lags": [x for v in lags.values() for x in v]}


@contextlib.contextmanager
def _pg_database(pg_url: str, name: str) -> Generator[str, None, None]:
    """A fresh database for the peer (dbos wants a database of its own); its URL."""
    import psycopg
    import sqlalchemy as sa  # in the peer venv: dbos depends on it

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = sa.make_url(pg_url).set(drivername="postgresql", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_worker(python: str, kind: str, args: argparse.Namespace, db: str) -> dict[str, Any]:
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind, "--db", db]
    cmd += ["--seconds", str(args.seconds), "--functions", str(args.functions)]
    cmd += ["--pg-url", args.pg_url]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")} if kind == "ours" else None
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{kind}/{db} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--db", choices=("sqlite", "postgres"), action="append")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--functions", type=int, default=5)
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--no-peer", action="store_true")
    p.add_argument("--worker", choices=("ours", "peer"), help=argparse.SUPPRESS)
    args = p.parse_args()
    dbs: list[str] = args.db or ["sqlite", "postgres"]

    if args.worker is not None:
        run = worker_ours if args.worker == "ours" else worker_peer
        with contextlib.redirect_stdout(sys.stderr):  # only the JSON line goes to stdout
            result = run(dbs[0], args.seconds, args.functions, args.pg_url)
        print(json.dumps(result), flush=True)
        return

    peer_python: str | None = None
    if not args.no_peer:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from _common import ensure_peer_venv

        peer_python = str(ensure_peer_venv())
    for db in dbs:
        ours = run_worker(sys.executable, "ours", args, db)
        peer_lags: list[float] | None = None
        if peer_python is not None:
            try:
                peer_lags = run_worker(peer_python, "peer", args, db)["lags"]
            except RuntimeError as exc:
                print(f"    dbos peer failed: {str(exc).splitlines()[0]}", file=sys.stderr)
        n = len(ours["lags"])
        print(
            f"scheduler lag  {db:<8} {_ms(ours['lags'])}  (n={n}, {args.functions}x 1s ticks)"
            f"   timer floor {_ms(ours['floor'])}   dbos-3.4.0 {_ms(peer_lags)}",
            flush=True,
        )


if __name__ == "__main__":
    main()
