"""Fixtures and helpers for the NATS JetStream and RabbitMQ receiver tests.

The tests talk to real servers (no mocks): NATS with JetStream at DBOS_TEST_NATS_URL
(default nats://127.0.0.1:4222) and RabbitMQ at DBOS_TEST_RABBITMQ_URL (default
amqp://guest:guest@127.0.0.1:5672/). When one is unreachable its tests are skipped with a
loud message, or fail when the CI environment variable is set (as conftest does for
Postgres). Every test gets its own stream or queue, deleted afterwards.
"""

import asyncio
import contextlib
import os
import socket
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aio_pika
import nats
import pamqp.exceptions
import pytest
from nats.js.api import StreamConfig
from pamqp import body as pamqp_body
from pamqp import commands, frame, header

from dbos_nats_receive import stream_epoch_of
from dbos_sdk import DBOS, WorkflowStatus

NATS_URL = os.environ.get("DBOS_TEST_NATS_URL", "nats://127.0.0.1:4222")
RABBITMQ_URL = os.environ.get("DBOS_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")

_unreachable: dict[str, str | None] = {}
"""Server URL -> why it is unreachable (None: reachable); checked once per session."""


def _probe(url: str, default_port: int) -> str | None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def require_server(what: str, url: str, default_port: int) -> str:
    """``url`` if the server answers; otherwise skip the test loudly (fail it under CI)."""
    if url not in _unreachable:
        _unreachable[url] = _probe(url, default_port)
        why = _unreachable[url]
        if why is not None:
            banner = "!" * 78
            msg = f"{what} IS NOT REACHABLE at {url}: {why}\nEvery {what} receiver test " + (
                "FAILS (CI is set)." if os.environ.get("CI") else "is SKIPPED."
            )
            print(f"\n{banner}\n{msg}\n{banner}", file=sys.stderr)
            warnings.warn(pytest.PytestWarning(msg), stacklevel=2)
    why = _unreachable[url]
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {what} is not reachable at {url}: {why}")
        pytest.skip(f"{what} is not reachable at {url}: {why}")
    return url


def unused_port() -> int:
    """A local TCP port nothing listens on (for the unreachable-server tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def wait_until(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def finished_workflows(name: str, count: int, timeout: float = 20.0) -> list[WorkflowStatus]:
    """Wait until ``count`` workflows named ``name`` exist and all finished; return them
    (oldest first). Fails if more than ``count`` appear."""
    found: list[WorkflowStatus] = []

    def done() -> bool:
        nonlocal found
        found = DBOS.list_workflows(name=name)
        assert len(found) <= count, f"{len(found)} workflows {name!r}, expected {count}"
        return len(found) == count and all(s.status in ("SUCCESS", "ERROR") for s in found)

    wait_until(done, f"{count} finished workflows {name!r}", timeout)
    return found


# --- NATS JetStream ------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    url: str
    name: str
    subject: str
    """The stream's subjects are ``{subject}.>``."""


@pytest.fixture
def nats_url() -> str:
    return require_server("NATS", NATS_URL, 4222)


@pytest.fixture
def nats_stream(nats_url: str) -> Generator[Stream, None, None]:
    """A fresh JetStream stream (subjects ``<subject>.>``), deleted after the test. Its
    duplicate window is JetStream's minimum, 100 ms, so that a test can publish one
    ``Nats-Msg-Id`` twice (as a publisher retrying after the window would)."""
    tag = uuid.uuid4().hex[:10]
    stream = Stream(nats_url, f"T_{tag}", f"t.{tag}")

    async def create() -> None:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            await js.add_stream(
                StreamConfig(
                    name=stream.name, subjects=[f"{stream.subject}.>"], duplicate_window=0.1
                )
            )
        finally:
            await nc.close()

    async def delete() -> None:
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().delete_stream(stream.name)
        finally:
            await nc.close()

    asyncio.run(create())
    yield stream
    asyncio.run(delete())


def nats_publish(
    url: str,
    subject: str,
    payloads: Sequence[bytes],
    msg_ids: Sequence[str | None] | None = None,
) -> list[int]:
    """Publish to JetStream, waiting for each acknowledgement; return the sequences."""

    async def run() -> list[int]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            seqs: list[int] = []
            for i, data in enumerate(payloads):
                msg_id = msg_ids[i] if msg_ids is not None else None
                headers = {"Nats-Msg-Id": msg_id} if msg_id else None
                ack = await js.publish(subject, data, headers=headers)
                seqs.append(ack.seq)
            return seqs
        finally:
            await nc.close()

    return asyncio.run(run())


def nats_stream_epoch(url: str, stream: str) -> int | None:
    """The stream's creation time as the receiver puts it into workflow IDs."""

    async def run() -> int | None:
        nc = await nats.connect(url)
        try:
            return stream_epoch_of((await nc.jetstream().stream_info(stream)).created)
        finally:
            await nc.close()

    return asyncio.run(run())


def nats_consumer_state(url: str, stream: str, durable: str) -> tuple[int, int]:
    """(messages not yet delivered, messages delivered but not acknowledged)."""

    async def run() -> tuple[int, int]:
        nc = await nats.connect(url)
        try:
            info = await nc.jetstream().consumer_info(stream, durable)
            return info.num_pending or 0, info.num_ack_pending or 0
        finally:
            await nc.close()

    return asyncio.run(run())


# --- RabbitMQ ------------------------------------------------------------------------


@dataclass(frozen=True)
class AmqpQueue:
    url: str
    name: str


@pytest.fixture
def rabbitmq_url() -> str:
    return require_server("RabbitMQ", RABBITMQ_URL, 5672)


@contextlib.contextmanager
def rabbitmq_queues(url: str, count: int) -> Generator[list[AmqpQueue], None, None]:
    """``count`` fresh durable queues, deleted on exit."""
    queues = [AmqpQueue(url, f"t-{uuid.uuid4().hex[:10]}") for _ in range(count)]

    async def declare(delete: bool) -> None:
        conn = await aio_pika.connect(url)
        try:
            channel = await conn.channel()
            for queue in queues:
                if delete:
                    await channel.queue_delete(queue.name)
                else:
                    await channel.declare_queue(queue.name, durable=True)
        finally:
            await conn.close()

    asyncio.run(declare(delete=False))
    try:
        yield queues
    finally:
        asyncio.run(declare(delete=True))


@pytest.fixture
def rabbitmq_queue(rabbitmq_url: str) -> Generator[AmqpQueue, None, None]:
    """A fresh durable queue, deleted after the test."""
    with rabbitmq_queues(rabbitmq_url, 1) as (queue,):
        yield queue


def rabbitmq_publish(
    url: str,
    queue: str,
    bodies: Sequence[bytes],
    message_ids: Sequence[str | None] | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Publish persistent messages to ``queue`` (default exchange) with publisher confirms.

    aio-pika's client (aiormq) gives a message without ``message_id`` a random one, as
    publishers of other clients may not: so a ``None`` here means "let the client choose".
    """

    async def run() -> None:
        conn = await aio_pika.connect(url)
        try:
            channel = await conn.channel(publisher_confirms=True)
            for i, body in enumerate(bodies):
                msg = aio_pika.Message(
                    body,
                    message_id=message_ids[i] if message_ids is not None else None,
                    headers=dict(headers or {}),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await channel.default_exchange.publish(msg, routing_key=queue)
        finally:
            await conn.close()

    asyncio.run(run())


def rabbitmq_publish_without_message_id(url: str, queue: str, bodies: Sequence[bytes]) -> None:
    """Publish persistent messages that carry no ``message_id`` property at all.

    Every aio-pika/aiormq publish gets a message_id, so this speaks AMQP 0-9-1 itself
    (frames from pamqp, over a plain socket), with publisher confirms: it publishes what
    a client that sets no message_id (the default of most clients) publishes.
    """
    parts = urlsplit(url)
    vhost = parts.path[1:] if len(parts.path) > 1 else "/"
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), 5)
    buffer = b""

    def send(value: frame.FrameTypes, channel: int = 0) -> None:
        sock.sendall(frame.marshal(value, channel))

    def receive(kind: type[object]) -> object:
        nonlocal buffer
        while True:
            try:
                used, _, value = frame.unmarshal(buffer)
            except pamqp.exceptions.UnmarshalingException:
                chunk = sock.recv(65536)
                assert chunk, "RabbitMQ closed the connection"
                buffer += chunk
                continue
            buffer = buffer[used:]
            assert isinstance(value, kind), f"expected {kind.__name__}, got {value!r}"
            return value

    try:
        sock.sendall(frame.marshal(header.ProtocolHeader(), 0))
        receive(commands.Connection.Start)
        login = f"\0{parts.username or 'guest'}\0{parts.password or 'guest'}"
        send(commands.Connection.StartOk(client_properties={}, response=login))
        tune = receive(commands.Connection.Tune)
        assert isinstance(tune, commands.Connection.Tune)
        send(commands.Connection.TuneOk(tune.channel_max, tune.frame_max, heartbeat=0))
        send(commands.Connection.Open(virtual_host=vhost))
        receive(commands.Connection.OpenOk)
        send(commands.Channel.Open(), 1)
        receive(commands.Channel.OpenOk)
        send(commands.Confirm.Select(), 1)
        receive(commands.Confirm.SelectOk)
        for data in bodies:
            send(commands.Basic.Publish(exchange="", routing_key=queue), 1)
            props = commands.Basic.Properties(delivery_mode=2)
            send(header.ContentHeader(0, len(data), props), 1)
            send(pamqp_body.ContentBody(data), 1)
            receive(commands.Basic.Ack)
        send(commands.Connection.Close(200, "bye", 0, 0))
        receive(commands.Connection.CloseOk)
    finally:
        sock.close()


def rabbitmq_queue_depth(url: str, queue: str) -> int:
    """Messages ready in ``queue`` (not counting those delivered and not acknowledged)."""

    async def run() -> int:
        conn = await aio_pika.connect(url)
        try:
            channel = await conn.channel()
            q = await channel.declare_queue(queue, passive=True)
            return q.declaration_result.message_count or 0
        finally:
            await conn.close()

    return asyncio.run(run())


# --- registrations -------------------------------------------------------------------


@pytest.fixture
def forget_receivers() -> Generator[None, None, None]:
    """Receivers a test registers are forgotten after it: conftest's registry isolation
    (dbos_sdk.testing.isolated_registry) does it; this name documents the need."""
    yield
