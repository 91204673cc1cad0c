"""Peer and floor figures for the benchmarks: the real `dbos` 3.4.0 package and raw commits.

Stdlib + psycopg only, so any benchmark script under the repo venv can import it.
`python benchmarks/_common.py` prints the floor and peer lines on their own.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any, cast

import psycopg
from psycopg import sql

REPO = pathlib.Path(__file__).resolve().parent.parent
PEER_VERSION = "3.4.0"
PEER_VENV = REPO / ".bench" / f"dbos-{PEER_VERSION}"
PEER_SCRIPT = REPO / "benchmarks" / "peer" / "dbos_peer.py"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# Scenario name -> (label for print_line, default n).
PEER_SCENARIOS: dict[str, tuple[str, int]] = {
    "wf1": ("1-step workflows", 500),
    "wf10": ("10-step workflows", 100),
    "queue_drain": ("queue drain", 2000),
    "tx": ("tx workflows", 500),
    "tx_async": ("async tx workflows", 500),  # Postgres only
}


def _peer_python() -> pathlib.Path:
    return PEER_VENV / "bin" / "python"


def _peer_ready(python: pathlib.Path) -> bool:
    if not python.exists():
        return False
    check = f"import dbos, importlib.metadata as m; assert m.version('dbos') == '{PEER_VERSION}'"
    return subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0


def ensure_peer_venv() -> pathlib.Path:
    """Create the peer venv with dbos==3.4.0 if it is not there yet; return its python."""
    python = _peer_python()
    if _peer_ready(python):
        return python
    if not python.exists():
        subprocess.run(["python3", "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run([*pip, f"dbos=={PEER_VERSION}"], capture_output=True, text=True)
    if done.returncode != 0 or not _peer_ready(python):
        raise RuntimeError(f"installing dbos=={PEER_VERSION} failed:\n{done.stderr[-2000:]}")
    return python


def run_peer(db: str, scenario: str, n: int, pg_url: str, repeat: int = 1) -> dict[str, Any]:
    """Run one dbos scenario in the peer venv; return its JSON result
    ({"scenario", "db", "value", "unit", "n", "batches"} and, when value is null, "reason").
    ``repeat`` timed batches of ``n`` for sequential scenarios: value is their median."""
    python = ensure_peer_venv()
    cmd = [str(python), str(PEER_SCRIPT), "--db", db, "--scenario", scenario, "--n", str(n)]
    cmd += ["--repeat", str(repeat)]
    done = subprocess.run([*cmd, "--pg-url", pg_url], capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"dbos peer {scenario}/{db} failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
        )
    result: object = json.loads(lines[-1])
    if not isinstance(result, dict):
        raise RuntimeError(f"dbos peer printed no JSON object: {lines[-1]!r}")
    return cast(dict[str, Any], result)


def floor_commits_per_s(db: str, pg_url: str, n: int) -> float:
    """Raw sequential single-row INSERT + COMMIT rate in a fresh table: no SDK can beat it."""
    if db == "sqlite":
        return _sqlite_floor(n)
    if db == "postgres":
        return _postgres_floor(pg_url, n)
    raise ValueError(f"unknown db {db!r}")


def _sqlite_floor(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench_floor_") as tmp:
        conn = sqlite3.connect(os.path.join(tmp, "floor.sqlite"))
        try:
            # The same settings as our SDK's SQLite backend: with WAL, synchronous=NORMAL
            # fsyncs only at checkpoints, so a commit survives a process crash (though not
            # a power loss) — the durability our backend promises, so the fair floor.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE floor (id INTEGER PRIMARY KEY, v INTEGER)")
            conn.commit()

            def commit_one(i: int) -> None:
                conn.execute("INSERT INTO floor (v) VALUES (?)", (i,))
                conn.commit()

            return _rate(commit_one, n)
        finally:
            conn.close()


def _postgres_floor(pg_url: str, n: int) -> float:
    # A real (logged) table: TEMP tables skip the WAL, so their commits cost nothing.
    table = sql.Identifier(f"bench_floor_{os.getpid()}")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(sql.SQL("CREATE TABLE {} (id SERIAL PRIMARY KEY, v INT)").format(table))
        try:
            insert = sql.SQL("INSERT INTO {} (v) VALUES (%s)").format(table)
            return _rate(lambda i: conn.execute(insert, (i,)), n)
        finally:
            conn.execute(sql.SQL("DROP TABLE {}").format(table))


def _rate(op: Callable[[int], object], n: int, warmup: int = 20) -> float:
    for i in range(warmup):
        op(i)
    start = time.perf_counter()
    for i in range(n):
        op(i)
    return n / (time.perf_counter() - start)


def print_line(
    scenario: str,
    db: str,
    ours: float | None,
    unit: str,
    floor: float | None = None,
    peer: float | None = None,
    note: str = "",
) -> None:
    """One aligned line per scenario: ours, then the floor and dbos when known, then
    ``note`` (e.g. a target and whether it is met)."""
    parts = [f"{scenario:<18} {db:<8} {_num(ours)} {unit:<6}"]
    if floor is not None:
        parts.append(f"floor {_num(floor)} commits/s")
    if peer is not None or ours is not None:
        parts.append(f"dbos-{PEER_VERSION} {_num(peer)} {unit:<6}")
    if ours is not None and peer:
        parts.append(f"({ours / peer:>5.2f}x dbos)")
    if note:
        parts.append(note)
    print("   ".join(parts).rstrip(), flush=True)


def _num(x: float | None) -> str:
    return f"{x:>9.1f}" if x is not None else f"{'n/a':>9}"


def main() -> None:
    p = argparse.ArgumentParser(description="Floor and dbos peer figures only.")
    p.add_argument("--db", choices=("sqlite", "postgres"), action="append")
    p.add_argument("--scenario", choices=sorted(PEER_SCENARIOS), action="append")
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--floor-n", type=int, default=2000)
    args = p.parse_args()
    dbs: list[str] = args.db or ["sqlite", "postgres"]
    scenarios: list[str] = args.scenario or list(PEER_SCENARIOS)
    for db in dbs:
        floor = floor_commits_per_s(db, args.pg_url, args.floor_n)
        for scenario in scenarios:
            if scenario == "tx_async" and db != "postgres":
                continue  # dbos's async datasource, like ours, runs on Postgres
            label, n = PEER_SCENARIOS[scenario]
            peer = run_peer(db, scenario, n, args.pg_url)
            print_line(label, db, None, "wf/s", floor=floor, peer=peer["value"])
            if peer.get("reason"):
                print(f"    dbos: {peer['reason']}")


if __name__ == "__main__":
    main()
