"""Engine speed: sequential 1-step and 10-step workflows/s and a queue drain, on SQLite and
Postgres, each beside the floor (raw single-row INSERT commits/s on the same database) and
beside dbos 3.4.0 from PyPI on the same database, all measured in the same run; then the
system-database round trips per 1-step workflow, as counted by our system database and as
counted independently (Postgres: the server's transaction counter; SQLite: sqlite3's own
statement trace).

    .venv/bin/python benchmarks/bench_engine.py [--db sqlite|postgres ...] [--quick]

The first run builds .bench/dbos-3.4.0 (a venv with dbos from PyPI). Every measurement of
ours runs on a fresh system database: an SQLite file in a temp dir, or a fresh schema in
the Postgres database ``bench_dbos_sdk`` (created for the run and dropped after it; the
floor runs there too). dbos runs in its own process on its own fresh databases on the same
server. A sequential scenario times 3 batches after a warm-up, ours and dbos alike, and
reports the median batch; the queue drain is one batch of 2,000. Ours and the floor run
both before and after dbos, so that load from elsewhere (this is a shared 2-core machine)
weighs on all three alike; "--quick" shrinks every size for a smoke test.

Each line: our figure, the floor, dbos's figure, our ratio to dbos, our system-database
statements per workflow and the share of the floor they use (rate x statements / floor),
our batches' range, and for Postgres's sequential scenarios the >= 5x dbos target.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from _common import (
    DEFAULT_PG_URL,
    PEER_VERSION,
    ensure_peer_venv,
    floor_commits_per_s,
    print_line,
    run_peer,
)
from dbos_sdk import DBOS, DBOSConfig, Queue
from dbos_sdk._runtime import current_runtime
from dbos_sdk._sysdb import SystemDatabase

BENCH_DB = "bench_dbos_sdk"
WARMUP = 20
MAX_ROUND_TRIPS = 3.0
MIN_PEER_RATIO = 5.0

# --- the workload: the same functions as benchmarks/peer/dbos_peer.py ---------------------


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


BENCH_QUEUE = Queue("bench_engine_q")


# --- sizes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sizes:
    """How many workflows each measurement runs (ours and dbos run the same number)."""

    wf1: int
    wf10: int
    queue_drain: int
    repeat: int
    """Timed batches of each sequential scenario (and of the floor); the median is reported.
    The queue drain is one batch."""
    round_trips: int
    floor: int


FULL = Sizes(wf1=500, wf10=100, queue_drain=2000, repeat=3, round_trips=500, floor=1000)
QUICK = Sizes(wf1=100, wf10=20, queue_drain=400, repeat=1, round_trips=100, floor=500)


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str
    """The scenario's name in benchmarks/peer/dbos_peer.py."""
    label: str
    n: Callable[[Sizes], int]
    sequential: Callable[[int], int] | None
    """The workflow called back to back, or None for the queue drain."""
    adds: int
    """What the workflow adds to its argument (to check its results)."""
    target: bool
    """Whether the >= 5x dbos target applies (sequential scenarios on Postgres)."""


SCENARIOS = (
    Scenario("wf1", "1-step workflows", lambda s: s.wf1, wf1, 1, True),
    Scenario("wf10", "10-step workflows", lambda s: s.wf10, wf10, 10, True),
    Scenario("queue_drain", "queue drain", lambda s: s.queue_drain, None, 1, False),
)


# --- databases and our runtime -------------------------------------------------------------


def _pg_url_for(base: str, database: str) -> str:
    p = urlsplit(base)
    return urlunsplit((p.scheme, p.netloc, "/" + database, p.query, p.fragment))


@contextlib.contextmanager
def bench_database(pg_url: str) -> Generator[str]:
    """A fresh Postgres database for this run; yields its URL and drops it afterwards."""
    name = sql.Identifier(BENCH_DB)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield _pg_url_for(pg_url, BENCH_DB)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


@dataclass(frozen=True, slots=True)
class Target:
    """Where our runtime's system databases go: ``db`` and, for Postgres, the bench
    database's URL and the admin URL (the server URL given, for the peer and for reading
    server counters from outside the bench database); SQLite ignores both."""

    db: str
    bench_url: str
    admin_url: str


@contextlib.contextmanager
def launched(target: Target, queue_poll_interval_s: float = 1.0) -> Generator[SystemDatabase]:
    """Launch our runtime on a fresh, empty system database; shut it down and drop the
    database afterwards. Yields the system database (for its round-trip counter)."""
    with contextlib.ExitStack() as stack:
        if target.db == "sqlite":
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_engine_"))
            url = f"sqlite:///{tmp}/sys.sqlite"
            config = DBOSConfig(
                "bench-engine", system_database_url=url, queue_poll_interval_s=queue_poll_interval_s
            )
        else:
            schema = f"bench_{uuid.uuid4().hex[:12]}"
            stack.callback(_drop_schema, target.bench_url, schema)
            config = DBOSConfig(
                "bench-engine",
                system_database_url=target.bench_url,
                postgres_schema=schema,
                queue_poll_interval_s=queue_poll_interval_s,
            )
        DBOS(config)
        DBOS.launch()
        stack.callback(DBOS.shutdown)
        rt = current_runtime()
        assert rt is not None, "DBOS.launch() left no runtime"
        yield rt.sysdb


def _drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# --- measurements of ours ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measured:
    rate: float
    """Workflows per second (the median batch)."""
    round_trips: float
    """System-database statements per workflow, as our system database counts them."""
    batches: tuple[float, ...]
    detail: str = ""


def run_sequential(fn: Callable[[int], int], adds: int, n: int, repeat: int) -> Measured:
    """Call ``fn`` ``n`` times back to back, ``repeat`` times, after a warm-up."""
    rt = current_runtime()
    assert rt is not None
    for i in range(WARMUP):
        fn(i)
    rates: list[float] = []
    before = rt.sysdb.round_trips
    for _ in range(repeat):
        start = time.perf_counter()
        results = [fn(i) for i in range(n)]
        rates.append(n / (time.perf_counter() - start))
        assert results == [i + adds for i in range(n)], f"{fn.__name__} returned wrong results"
    trips = rt.sysdb.round_trips - before
    return Measured(statistics.median(rates), trips / (n * repeat), tuple(rates))


def run_queue_drain(n: int) -> Measured:
    """Enqueue ``n`` 1-step workflows at once and wait for every result, as dbos_peer does.
    The detail says how long the enqueueing took and how long the drain went on after it."""
    rt = current_runtime()
    assert rt is not None
    for h in [BENCH_QUEUE.enqueue(wf1, i) for i in range(WARMUP)]:
        h.get_result()
    before = rt.sysdb.round_trips
    start = time.perf_counter()
    handles = [BENCH_QUEUE.enqueue(wf1, i) for i in range(n)]
    enqueued = time.perf_counter()
    results = [h.get_result() for h in handles]
    end = time.perf_counter()
    trips = rt.sysdb.round_trips - before
    assert results == [i + 1 for i in range(n)], "queued workflows returned wrong results"
    detail = (
        f"enqueue {n} took {enqueued - start:.2f}s ({n / (enqueued - start):.0f}/s), "
        f"then {end - enqueued:.2f}s until the last result; "
        f"{trips / n:.2f} system-db statements per queued workflow"
    )
    rate = n / (end - start)
    return Measured(rate, trips / n, (rate,), detail)


def measure_ours(target: Target, scenario: Scenario, n: int, repeat: int) -> Measured:
    with launched(target):
        if scenario.sequential is not None:
            return run_sequential(scenario.sequential, scenario.adds, n, repeat)
        return run_queue_drain(n)


# --- round trips, counted twice ----------------------------------------------------------------

# The idle queue poll (a dequeue per queue per poll interval) is a cost per second, not per
# workflow: the round-trip lifetimes set it to an hour so that a slow (loaded) machine does
# not inflate the count. The cancellation watcher's check (a statement per half second while
# a workflow runs) remains: it is why the per-workflow figure is the median over workflows,
# while the means (ours and the independent count, which must agree) include it.
QUIET_POLL_S = 3600.0


@dataclass(frozen=True, slots=True)
class RoundTrips:
    median: float
    """Statements of the median 1-step workflow, from SystemDatabase.round_trips."""
    mean: float
    """Statements per 1-step workflow over the whole window (background included)."""
    independent: float | None
    """The mean counted outside our system database code, over the same kind of window."""
    source: str


def _count_each(n: int, *counters: Callable[[], int]) -> list[list[int]]:
    """Run ``n`` 1-step workflows; per counter, what each workflow added to it."""
    per: list[list[int]] = [[] for _ in counters]
    for i in range(n):
        before = [c() for c in counters]
        wf1(i)
        for counts, c, b in zip(per, counters, before, strict=True):
            counts.append(c() - b)
    return per


def round_trips_sqlite(target: Target, n: int) -> RoundTrips:
    """Ours against sqlite3's statement trace on the engine's connection (statements the
    SQLite library actually ran, BEGIN and COMMIT included)."""
    with launched(target, QUIET_POLL_S) as sysdb:
        for i in range(WARMUP):
            wf1(i)
        traced = _StatementTrace()
        conn = getattr(sysdb, "_conn", None)  # the backend's one connection (private)
        if not isinstance(conn, sqlite3.Connection):
            [ours] = _count_each(n, lambda: sysdb.round_trips)
            return RoundTrips(statistics.median(ours), sum(ours) / n, None, "no sqlite3 trace")
        conn.set_trace_callback(traced)
        try:
            ours, seen = _count_each(n, lambda: sysdb.round_trips, lambda: traced.count)
        finally:
            conn.set_trace_callback(None)
        return RoundTrips(statistics.median(ours), sum(ours) / n, sum(seen) / n, "sqlite3 trace")


class _StatementTrace:
    """A sqlite3 trace callback that counts the statements it is shown."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self, _statement: str) -> None:
        with self._lock:
            self.count += 1


def round_trips_postgres(target: Target, n: int) -> RoundTrips:
    """Ours against the server: committed plus rolled-back transactions of the bench
    database (pg_stat_database), over two whole runtime lifetimes that differ only by
    ``n`` 1-step workflows, so launch, migration and shutdown cancel out. Every statement
    of ours outside an explicit transaction is one server transaction."""
    ours: list[int] = []
    mean = 0.0
    xacts: list[int] = []
    for extra in (0, n):
        before = _server_xacts(target)
        with launched(target, QUIET_POLL_S) as sysdb:
            for i in range(WARMUP):
                wf1(i)
            start = sysdb.round_trips
            if extra:
                [ours] = _count_each(extra, lambda: sysdb.round_trips)
                mean = (sysdb.round_trips - start) / extra
        # Both lifetimes include the same launch, shutdown and schema drop.
        xacts.append(_server_xacts(target) - before)
    server = (xacts[1] - xacts[0]) / n
    return RoundTrips(statistics.median(ours), mean, server, "pg_stat_database xacts")


def _server_xacts(target: Target, timeout_s: float = 15.0) -> int:
    """Transactions the server has counted for the bench database, once no session is
    connected to it (a backend flushes its counters when it exits) and the count is still."""
    query = (
        "SELECT numbackends, xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s"
    )
    deadline = time.monotonic() + timeout_s
    last: int | None = None
    with psycopg.connect(target.admin_url, autocommit=True) as conn:
        while True:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(query, (BENCH_DB,)).fetchone()
            assert row is not None, f"no pg_stat_database row for {BENCH_DB}"
            backends, count = int(row[0]), int(row[1])
            if backends == 0 and count == last:
                return count
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{BENCH_DB} still has {backends} session(s) after {timeout_s}s; "
                    "cannot read settled server counters"
                )
            last = count if backends == 0 else None
            time.sleep(0.1)


# --- driver ----------------------------------------------------------------------------------


def _peer_rate(
    db: str, scenario: Scenario, n: int, repeat: int, pg_url: str, skip: bool
) -> float | None:
    if skip:
        return None
    try:
        result = run_peer(db, scenario.key, n, pg_url, repeat)
    except RuntimeError as exc:
        print(f"    dbos-{PEER_VERSION} {scenario.key}/{db} failed: {exc}", file=sys.stderr)
        return None
    if result.get("reason"):
        print(f"    dbos-{PEER_VERSION}: {result['reason']}")
    value = result.get("value")
    return float(value) if isinstance(value, (int, float)) else None


def _target_note(ours: float, peer: float | None) -> str:
    if peer is None:
        return f"target >= {MIN_PEER_RATIO:.0f}x dbos: not measured"
    verdict = "met" if ours >= MIN_PEER_RATIO * peer else "MISSED"
    return f"target >= {MIN_PEER_RATIO:.0f}x dbos: {verdict}"


def bench_db(target: Target, sizes: Sizes, skip_peer: bool) -> None:
    for scenario in SCENARIOS:
        n = scenario.n(sizes)
        repeat = sizes.repeat if scenario.sequential is not None else 1
        # Ours and the floor are measured both before and after dbos (a bracket), so that
        # a burst of load from elsewhere during one of them biases the ratio less.
        floors = _floors(target, sizes)
        before = measure_ours(target, scenario, n, repeat)
        peer = _peer_rate(target.db, scenario, n, repeat, target.admin_url, skip_peer)
        after = measure_ours(target, scenario, n, repeat)
        floors += _floors(target, sizes)
        floor = statistics.median(floors)
        batches = before.batches + after.batches
        rate = statistics.median(batches)
        stmts = (before.round_trips + after.round_trips) / 2
        # The statement rate we drive, as a share of the floor: how close to the database
        # (rather than to Python) the scenario is bound.
        notes = [f"{stmts:5.2f} stmts/wf = {rate * stmts / floor:>4.0%} of floor"]
        notes.append(f"ours {min(batches):.0f}-{max(batches):.0f} over {len(batches)} batches")
        if scenario.target and target.db == "postgres":
            notes.append(_target_note(rate, peer))
        print_line(scenario.label, target.db, rate, "wf/s", floor, peer, "   ".join(notes))
        for m in (before, after):
            if m.detail:
                print(f"    {m.detail}", flush=True)
    if target.db == "sqlite":
        trips = round_trips_sqlite(target, sizes.round_trips)
    else:
        trips = round_trips_postgres(target, sizes.round_trips)
    _print_round_trips(target.db, trips)


def _floors(target: Target, sizes: Sizes) -> list[float]:
    return [
        floor_commits_per_s(target.db, target.bench_url, sizes.floor) for _ in range(sizes.repeat)
    ]


def _print_round_trips(db: str, trips: RoundTrips) -> None:
    independent = f"{trips.independent:.2f}" if trips.independent is not None else "n/a"
    # The independent count must agree with ours over the window (both include the
    # background statements), and the median workflow must make at most the target.
    agrees = trips.independent is None or abs(trips.independent - trips.mean) < 0.05
    verdict = "met" if trips.median <= MAX_ROUND_TRIPS and agrees else "MISSED"
    print(
        f"{'round trips/wf1':<18} {db:<8} {trips.median:>9.2f} stmts     "
        f"(median workflow; mean {trips.mean:.2f}, {trips.source} mean {independent}"
        f"{'' if agrees else ' DISAGREES'})   "
        f"target <= {MAX_ROUND_TRIPS:.0f} per 1-step workflow: {verdict}",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--db", choices=("sqlite", "postgres"), action="append")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not figures")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL, help="server to use (any database)")
    p.add_argument("--skip-peer", action="store_true", help="do not run dbos (faster iteration)")
    args = p.parse_args()
    dbs: list[str] = args.db or ["sqlite", "postgres"]
    sizes = QUICK if args.quick else FULL
    pg_url: str = args.pg_url
    skip_peer: bool = args.skip_peer
    if not skip_peer:
        ensure_peer_venv()
    started = time.perf_counter()
    for db in dbs:
        if db == "sqlite":
            bench_db(Target("sqlite", pg_url, pg_url), sizes, skip_peer)
            continue
        with bench_database(pg_url) as bench_url:
            bench_db(Target("postgres", bench_url, pg_url), sizes, skip_peer)
    print(f"({time.perf_counter() - started:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
