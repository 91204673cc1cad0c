"""Broker receiver benchmark: events to started (and finished) workflows per second.

    .venv/bin/python benchmarks/bench_brokers.py [--broker nats|rabbitmq] [--db sqlite|postgres]
        [--n 2000] [--pg-url postgresql://postgres@127.0.0.1:5432/postgres]
        [--nats-url nats://127.0.0.1:4222] [--rabbitmq-url amqp://guest:guest@127.0.0.1:5672/]

For each broker and database: publish ``--n`` messages to a fresh stream (NATS JetStream)
or queue (RabbitMQ), then launch DBOS with the receiver bound to a one-line workflow and
time the drain of that backlog, from the moment the first workflow body starts (so the
database migration and the broker connection at launch are not counted) until

- the n-th workflow body **started** (each body records when it begins; a body begins
  only after its workflow row was durably written): ``started`` = (n-1) / that time;
- all n workflows **finished** (status SUCCESS in the system database, polled every
  50 ms): ``finished`` = (n-1) / that time.

The receiver pulls in batches (NATS ``batch=100``; RabbitMQ ``prefetch=100``) and starts
the workflows of a batch concurrently. One line per broker and database, with the same
run's floors:

- ``sdk-only``: the same workflows started by ``DBOS.start_workflow_registered_async``
  in batches of 100 with no broker (what the receiver adds is the broker's part), and
- ``broker``: the same client library consuming and acknowledging n messages with no
  DBOS at all (no receiver can be faster than its broker), and
- ``commits``: raw sequential INSERT+COMMIT on the database (benchmarks/_common.py); each
  workflow start is at least one commit, and finishing it another.

dbos 3.4.0, the peer of the other benchmarks, has no NATS or RabbitMQ receiver (only
Kafka), so there is no peer figure. Each measurement runs in a child process (this same
file, ``--worker``), since receivers stay registered for the life of a process.
"""

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
WORKFLOW = "bench.brokers.handle"
PUBLISH_WINDOW = 200
"""Publishes in flight at once while filling the stream or queue."""


# --- brokers: fill, drain (the floor), clean up -------------------------------------------


async def _nats_fill(url: str, stream: str, subject: str, n: int) -> None:
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{subject}.>"]))
        for start in range(0, n, PUBLISH_WINDOW):
            batch = range(start, min(n, start + PUBLISH_WINDOW))
            await asyncio.gather(*(js.publish(f"{subject}.e", b'{"i": %d}' % i) for i in batch))
    finally:
        await nc.close()


async def _nats_drain(url: str, stream: str, n: int) -> float:
    """Consume and acknowledge n messages as the receiver does (pull 100, ack each)."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_consumer(
            stream,
            ConsumerConfig(name="floor", durable_name="floor", ack_policy=AckPolicy.EXPLICIT),
        )
        sub = await js.pull_subscribe_bind(durable="floor", stream=stream)
        started = time.perf_counter()
        got = 0
        while got < n:
            msgs = await sub.fetch(100, timeout=5)
            await asyncio.gather(*(m.ack() for m in msgs))
            got += len(msgs)
        await nc.flush()
        return n / (time.perf_counter() - started)
    finally:
        await nc.close()


async def _nats_delete(url: str, stream: str) -> None:
    import nats

    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(stream)
    finally:
        await nc.close()


async def _rabbitmq_fill(url: str, queue: str, n: int) -> None:
    import aio_pika

    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True)
        for start in range(0, n, PUBLISH_WINDOW):
            batch = range(start, min(n, start + PUBLISH_WINDOW))
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(
                            b'{"i": %d}' % i,
                            message_id=f"m{i}",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=queue,
                    )
                    for i in batch
                )
            )
    finally:
        await conn.close()


async def _rabbitmq_drain(url: str, queue: str, n: int) -> float:
    """Consume and acknowledge n messages as the receiver does (prefetch 100, ack each)."""
    import aio_pika
    from aio_pika.abc import AbstractIncomingMessage

    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel()
        await channel.set_qos(prefetch_count=100)
        q = await channel.declare_queue(queue, passive=True)
        done = asyncio.Event()
        count = 0

        async def on_message(message: AbstractIncomingMessage) -> None:
            nonlocal count
            await message.ack()
            count += 1
            if count >= n:
                done.set()

        started = time.perf_counter()
        await q.consume(on_message)
        await asyncio.wait_for(done.wait(), timeout=120)
        return n / (time.perf_counter() - started)
    finally:
        await conn.close()


async def _rabbitmq_delete(url: str, queue: str) -> None:
    import aio_pika

    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel()
        await channel.queue_delete(queue)
    finally:
        await conn.close()


# --- the DBOS run (in a worker process) ----------------------------------------------------


@contextlib.contextmanager
def _system_db(db: str, pg_url: str) -> Generator[dict[str, Any], None, None]:
    """DBOSConfig keyword arguments for a fresh system database, dropped afterwards."""
    if db == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench_brokers_") as tmp:
            yield {"system_database_url": f"sqlite:///{tmp}/sys.sqlite"}
        return
    import psycopg

    schema = f"bench_brokers_{uuid.uuid4().hex[:8]}"
    try:
        yield {"system_database_url": pg_url, "postgres_schema": schema}
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _run_dbos(
    broker: str, db: str, n: int, args: argparse.Namespace, target: str
) -> tuple[float, float]:
    """(seconds from the first body start to the n-th, and to all n finished)."""
    from dbos_sdk import DBOS, DBOSConfig

    starts: list[float] = []
    lock = threading.Lock()
    all_started = threading.Event()

    def handle(doc: dict[str, int]) -> int:
        with lock:
            starts.append(time.perf_counter())
            if len(starts) >= n:
                all_started.set()
        return doc["i"]

    with _system_db(db, args.pg_url) as sysdb:
        DBOS(DBOSConfig("bench-brokers", **sysdb))
        workflow = DBOS.workflow(name=WORKFLOW)(handle)
        if broker == "nats":
            from dbos_nats_receive import NatsReceiver

            NatsReceiver("bench", args.nats_url).consumer(
                stream=target, durable="bench", payload="json", batch=100
            )(workflow)
        else:
            from dbos_rabbitmq_receive import RabbitMQReceiver

            RabbitMQReceiver("bench", args.rabbitmq_url).consumer(
                queue=target, payload="json", prefetch=100
            )(workflow)
        DBOS.launch()
        try:
            if not all_started.wait(timeout=300):
                raise RuntimeError(f"only {len(starts)} of {n} workflows started")
            t0 = min(starts)
            t_started = max(starts) - t0
            while True:
                finished = DBOS.list_workflows(name=WORKFLOW, status="SUCCESS", load_output=False)
                if len(finished) >= n:
                    break
                time.sleep(0.05)
            t_finished = time.perf_counter() - t0
        finally:
            DBOS.shutdown()
    return t_started, t_finished


def _run_sdk_only(db: str, n: int, args: argparse.Namespace) -> float:
    """Seconds from the first body start to the n-th when the same workflows are started
    with DBOS.start_workflow_registered_async in batches of 100, with no broker at all."""
    from dbos_sdk import DBOS, DBOSConfig, StartWorkflowOptions
    from dbos_sdk.receiver import get_registered_workflows

    starts: list[float] = []
    lock = threading.Lock()
    all_started = threading.Event()

    def handle_direct(doc: dict[str, int]) -> int:
        with lock:
            starts.append(time.perf_counter())
            if len(starts) >= n:
                all_started.set()
        return doc["i"]

    with _system_db(db, args.pg_url) as sysdb:
        DBOS(DBOSConfig("bench-brokers-sdk", **sysdb))
        DBOS.workflow(name=f"{WORKFLOW}.direct")(handle_direct)
        DBOS.launch()
        try:
            (reg,) = [r for r in get_registered_workflows() if r.name == f"{WORKFLOW}.direct"]

            async def start_all() -> None:
                for first in range(0, n, 100):
                    await asyncio.gather(
                        *(
                            DBOS.start_workflow_registered_async(
                                reg, ({"i": i},), {}, StartWorkflowOptions(workflow_id=f"d{i}")
                            )
                            for i in range(first, min(n, first + 100))
                        )
                    )

            asyncio.run(start_all())
            if not all_started.wait(timeout=300):
                raise RuntimeError(f"only {len(starts)} of {n} workflows started")
            return max(starts) - min(starts)
        finally:
            DBOS.shutdown()


def worker(args: argparse.Namespace) -> None:
    """One broker and database: fill, measure the broker floor, measure DBOS; print JSON."""
    broker, db, n = args.worker, args.db[0], args.n
    tag = uuid.uuid4().hex[:8]
    result: dict[str, Any] = {"broker": broker, "db": db, "n": n}
    result["sdk_only_s"] = _run_sdk_only(db, n, args)
    if broker == "nats":
        floor_stream, stream = f"BENCH_FLOOR_{tag}", f"BENCH_{tag}"
        try:
            asyncio.run(_nats_fill(args.nats_url, floor_stream, f"bench.floor.{tag}", n))
            result["broker_floor"] = asyncio.run(_nats_drain(args.nats_url, floor_stream, n))
            asyncio.run(_nats_fill(args.nats_url, stream, f"bench.run.{tag}", n))
            result["started_s"], result["finished_s"] = _run_dbos(broker, db, n, args, stream)
        finally:
            for s in (floor_stream, stream):
                with contextlib.suppress(Exception):
                    asyncio.run(_nats_delete(args.nats_url, s))
    else:
        floor_queue, queue = f"bench-floor-{tag}", f"bench-{tag}"
        try:
            asyncio.run(_rabbitmq_fill(args.rabbitmq_url, floor_queue, n))
            result["broker_floor"] = asyncio.run(_rabbitmq_drain(args.rabbitmq_url, floor_queue, n))
            asyncio.run(_rabbitmq_fill(args.rabbitmq_url, queue, n))
            result["started_s"], result["finished_s"] = _run_dbos(broker, db, n, args, queue)
        finally:
            for q in (floor_queue, queue):
                with contextlib.suppress(Exception):
                    asyncio.run(_rabbitmq_delete(args.rabbitmq_url, q))
    print(json.dumps(result), flush=True)


# --- driver ---------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--broker", choices=("nats", "rabbitmq"), action="append")
    p.add_argument("--db", choices=("sqlite", "postgres"), action="append")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--pg-url", default=DEFAULT_PG_URL)
    p.add_argument("--nats-url", default=DEFAULT_NATS_URL)
    p.add_argument("--rabbitmq-url", default=DEFAULT_RABBITMQ_URL)
    p.add_argument("--worker", choices=("nats", "rabbitmq"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import floor_commits_per_s

    brokers: list[str] = args.broker or ["nats", "rabbitmq"]
    dbs: list[str] = args.db or ["sqlite", "postgres"]
    print(f"events -> workflows: a backlog of n={args.n} messages, from the first start")
    for db in dbs:
        commits = floor_commits_per_s(db, args.pg_url, 2000)
        for broker in brokers:
            cmd = [sys.executable, __file__, "--worker", broker, "--db", db, "--n", str(args.n)]
            cmd += ["--pg-url", args.pg_url, "--nats-url", args.nats_url]
            cmd += ["--rabbitmq-url", args.rabbitmq_url]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            lines = done.stdout.strip().splitlines()
            if done.returncode != 0 or not lines:
                print(
                    f"{broker:<9} {db:<8} failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
                )
                continue
            r = json.loads(lines[-1])
            n = r["n"] - 1
            print(
                f"{broker:<9} {db:<8} started {n / r['started_s']:8.1f} wf/s   "
                f"finished {n / r['finished_s']:8.1f} wf/s   "
                f"floor: sdk-only {n / r['sdk_only_s']:8.1f} wf/s, broker-only "
                f"{r['broker_floor']:8.1f} msg/s, {commits:8.1f} commits/s   "
                "(dbos-3.4.0: no such receiver)",
                flush=True,
            )


if __name__ == "__main__":
    main()
