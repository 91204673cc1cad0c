"""Receiver conformance kits for every receiver in this repository (one per receiver).

``tests/test_receiver_conformance.py`` names them as ``kit_factory``; the suite's crash
checks import this module first in their child processes, so it turns beartype on for
the packages under test before importing any of them (with the configuration of
tests/conftest.py, which makes the call a no-op in the test process).

The servers are the tests' (see tests/_brokers.py and tests/conftest.py): Postgres at
DBOS_TEST_DATABASE_URL, NATS JetStream at DBOS_TEST_NATS_URL, RabbitMQ at
DBOS_TEST_RABBITMQ_URL. Every name a kit creates on a server comes from its scratch
token, so a kit rebuilt in a child process reaches the same stream, queue or table.
"""

import warnings

from beartype import BeartypeConf
from beartype.claw import beartype_package
from beartype.roar import BeartypeClawDecorWarning

warnings.simplefilter("error", BeartypeClawDecorWarning)
for _package in (
    "dbos_sdk",
    "dbos_pgnotify_receive",
    "dbos_asgi_serve",
    "dbos_nats_receive",
    "dbos_rabbitmq_receive",
):
    beartype_package(_package, conf=BeartypeConf(claw_is_pep526=False, is_pep484_tower=True))

import asyncio  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import quote, urlsplit  # noqa: E402

import aio_pika  # noqa: E402
import httpx  # noqa: E402
import nats  # noqa: E402
import psycopg  # noqa: E402
import uvicorn  # noqa: E402
from nats.js.api import StreamConfig  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

from dbos_asgi_serve import DBOSASGI  # noqa: E402
from dbos_nats_receive import (  # noqa: E402
    NatsMessage,
    NatsReceiver,
    WorkflowIdFrom,
    stream_epoch_of,
    workflow_id_for,
)
from dbos_pgnotify_receive import PgChangeReceiver  # noqa: E402
from dbos_rabbitmq_receive import RabbitMQMessage, RabbitMQReceiver  # noqa: E402
from dbos_sdk import DBOS  # noqa: E402
from dbos_sdk.scheduler import SCHEDULES, SERVICE, STATE_KEY, ScheduleInfo  # noqa: E402
from dbos_sdk.testing import (  # noqa: E402
    Association,
    Binding,
    Delivery,
    DispatchStateRef,
    Misconfiguration,
    NotSupported,
    ReceiverKit,
    Supported,
    TargetWorkflow,
)

PG_URL = os.environ.get("DBOS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("DBOS_TEST_NATS_URL", "nats://127.0.0.1:4222")
RABBITMQ_URL = os.environ.get("DBOS_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
RECEIVER = "conf"
"""The name of every receiver under test (part of their workflow IDs)."""


def _tcp_unreachable(url: str, default_port: int) -> str | None:
    parts = urlsplit(url)
    try:
        socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 3
        ).close()
    except OSError as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    return None


# --- the scheduler ----------------------------------------------------------------------


class SchedulerKit(ReceiverKit):
    """``@DBOS.scheduled`` every second (exactly once per interval); an event is a tick."""

    CRON = "* * * * * *"
    unsolicited_events = "the schedule fires every second by itself, not only when delivered"

    _name: str = ""
    _last: int = 0

    def unreachable(self) -> str | None:
        return None  # no server: the clock

    def bind(self, target: TargetWorkflow) -> Binding[None, ScheduleInfo, None]:
        self._name = target.name
        DBOS.scheduled(self.CRON)(target.func)
        return Binding(
            association=Association(
                registry=SCHEDULES,
                matches=lambda info: (
                    (info.cron, info.mode, info.queue)
                    == (self.CRON, "exactly_once_per_interval", None)
                ),
            ),
            dispatch_state=DispatchStateRef(
                service=SERVICE, workflow_fn_name=target.name, key=STATE_KEY
            ),
        )

    def deliver(self, key: str) -> Delivery:
        """Wait for the next tick (the key is the tick's own: its time)."""
        second = max(int(time.time()) + 1, self._last + 1)
        self._last = second
        while time.time() < second:
            time.sleep(min(0.05, max(0.0, second - time.time())))
        tick = datetime.fromtimestamp(second, UTC).isoformat()
        return Delivery(key=tick, workflow_id=f"sched-{self._name}-{tick}")

    def event_key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        scheduled_time: datetime = args[0]
        return scheduled_time.isoformat()

    def redelivery(self) -> Supported | NotSupported:
        return NotSupported(
            reason="the scheduler offers a tick once per process; it offers one again only "
            "after a restart finds it missing from the dispatch state (the crash checks)"
        )

    def delivery_while_down(self) -> Supported | NotSupported:
        return Supported()  # ticks missed while down are caught up at launch

    def crash_restart(self) -> Supported | NotSupported:
        return Supported()

    def bind_misconfigured(self, target: TargetWorkflow) -> Misconfiguration | NotSupported:
        DBOS.scheduled("61 * * * *")(target.func)
        return Misconfiguration(mentions=["'61 * * * *'", "is not a valid cron expression"])


# --- Postgres changes (LISTEN/NOTIFY and polling) ------------------------------------------


class PgNotifyKit(ReceiverKit):
    """A ``PgChangeReceiver`` in mode "both" on a fresh table; an event is a new row."""

    _name: str = ""

    @property
    def schema(self) -> str:
        return self.scratch.token

    @property
    def table(self) -> str:
        return f"{self.schema}.events"

    def unreachable(self) -> str | None:
        try:
            psycopg.connect(PG_URL, connect_timeout=3).close()
        except psycopg.Error as exc:
            return f"{PG_URL}: {str(exc).strip()}"
        return None

    def create_scratch(self) -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
            conn.execute(f'CREATE SEQUENCE "{self.schema}".versions')
            conn.execute(
                f'CREATE TABLE "{self.schema}".events (id text PRIMARY KEY, '
                "version bigint NOT NULL, note text NOT NULL DEFAULT '')"
            )

    def drop_scratch(self) -> None:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def _receiver(self, target: TargetWorkflow, table: str) -> PgChangeReceiver:
        receiver = PgChangeReceiver(RECEIVER, PG_URL)
        receiver.on_change(
            table=table,
            key_columns=["id"],
            version_column="version",
            mode="both",
            poll_interval=0.2,
            install_trigger=True,
        )(target.func)
        return receiver

    def bind(self, target: TargetWorkflow) -> Binding[Any, Any, Any]:
        self._name = target.name
        receiver = self._receiver(target, self.table)
        return Binding(
            association=Association(
                # The receiver keeps its registry private; this kit is its author's.
                registry=receiver._registry,  # pyright: ignore[reportPrivateUsage]
                matches=lambda subs: [s.qualified_table for s in subs] == [self.table],
            ),
            dispatch_state=DispatchStateRef(
                service=RECEIVER, workflow_fn_name=target.name, key=self.table
            ),
        )

    def deliver(self, key: str) -> Delivery:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            row = conn.execute(
                f'INSERT INTO "{self.schema}".events (id, version) '
                f"VALUES (%s, nextval('\"{self.schema}\".versions')) RETURNING version",
                (key,),
            ).fetchone()
        assert row is not None
        wfid = f"pgchange:{RECEIVER}:{self._name}:{self.table}:{quote(key, safe='')}@{row[0]}"
        return Delivery(key=key, workflow_id=wfid)

    def redeliver(self, delivery: Delivery) -> None:
        """Touch the row without a new version: its trigger NOTIFYs again."""
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(
                f"UPDATE \"{self.schema}\".events SET note = note || 'x' WHERE id = %s",
                (delivery.key,),
            )

    def event_key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        record: dict[str, Any] = args[0]
        return str(record["id"])

    def redelivery(self) -> Supported | NotSupported:
        return Supported()

    def delivery_while_down(self) -> Supported | NotSupported:
        return Supported()  # caught up from the dispatch state at launch

    def crash_restart(self) -> Supported | NotSupported:
        return Supported()

    def bind_misconfigured(self, target: TargetWorkflow) -> Misconfiguration | NotSupported:
        self._receiver(target, f"{self.schema}.nope")
        return Misconfiguration(mentions=[f"table='{self.schema}.nope'", "does not exist"])


# --- HTTP (ASGI) -------------------------------------------------------------------------


class AsgiKit(ReceiverKit):
    """A ``DBOSASGI`` route served by uvicorn; an event is a POST with an idempotency key.

    The server runs for the whole check and forwards to the app of the latest bind (each
    bind makes a new DBOSASGI, as each check has its own registry).
    """

    _api: DBOSASGI | None = None
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _url: str = ""

    def unreachable(self) -> str | None:
        return None  # the server is the kit's own

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        api = self._api
        if api is None:
            raise RuntimeError("no DBOSASGI is bound")
        await api.app(scope, receive, send)

    def create_scratch(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(
            uvicorn.Config(self._app, interface="asgi3", lifespan="off", log_level="warning")
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread

    def drop_scratch(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)

    def bind(self, target: TargetWorkflow) -> Binding[Any, Any, Any]:
        api = DBOSASGI(name=RECEIVER)
        api.post("/conformance")(target.func)
        self._api = api
        return Binding(
            association=Association(
                registry=api._registry,  # pyright: ignore[reportPrivateUsage]
                matches=lambda routes: (
                    [(r.path, r.methods) for r in routes] == [("/conformance", ("POST",))]
                ),
            ),
            dispatch_state=NotSupported(
                reason="HTTP requests cannot be replayed by the server, so DBOSASGI keeps "
                "no position: a client retries with its idempotency key"
            ),
        )

    def _post(self, key: str) -> None:
        r = httpx.post(
            f"{self._url}/conformance",
            json={"key": key},
            headers={"dbos-idempotency-key": key},
            timeout=30,
        )
        if r.status_code != 200:
            raise AssertionError(f"POST /conformance for {key!r}: {r.status_code} {r.text}")

    def deliver(self, key: str) -> Delivery:
        self._post(key)
        return Delivery(key=key, workflow_id=key)  # the idempotency key is the workflow ID

    def redeliver(self, delivery: Delivery) -> None:
        self._post(delivery.key)  # a client's retry

    def event_key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        return str(kwargs["key"])

    def redelivery(self) -> Supported | NotSupported:
        return Supported()

    def delivery_while_down(self) -> Supported | NotSupported:
        return NotSupported(
            reason="a shut-down app answers 503 and nothing holds the request; the client "
            "retries after the relaunch"
        )

    def crash_restart(self) -> Supported | NotSupported:
        return NotSupported(
            reason="no broker holds an HTTP request across a crash: the client retries it "
            "with the same idempotency key, as the redelivery check does"
        )

    def bind_misconfigured(self, target: TargetWorkflow) -> Misconfiguration | NotSupported:
        return NotSupported(
            reason="DBOSASGI connects to nothing at launch; its settings (path, methods, "
            "headers) are rejected when decorating, with DBOSConfigurationError"
        )


# --- NATS JetStream --------------------------------------------------------------------------


class NatsKit(ReceiverKit):
    """A durable pull consumer with ``workflow_id_from="msg_id"`` on a fresh stream; an
    event is a message with a ``Nats-Msg-Id``. ``ack_wait`` is 1 s, so that a message
    left unacknowledged by a crash comes back quickly."""

    DURABLE = "conf"
    ID_FROM: WorkflowIdFrom = "msg_id"

    @property
    def stream(self) -> str:
        return f"CONF_{self.scratch.token}"

    @property
    def subject(self) -> str:
        return f"conf.{self.scratch.token}"

    def unreachable(self) -> str | None:
        return _tcp_unreachable(NATS_URL, 4222)

    def _js(self, action: str, data: bytes = b"", msg_id: str = "") -> tuple[int, int | None]:
        """Create or delete the stream, or publish; (sequence, stream epoch) of a publish."""

        async def run() -> tuple[int, int | None]:
            nc = await nats.connect(NATS_URL)
            try:
                js = nc.jetstream()
                if action == "create":
                    # The shortest duplicate window, so that a republish counts as new.
                    config = StreamConfig(
                        name=self.stream, subjects=[f"{self.subject}.>"], duplicate_window=0.1
                    )
                    await js.add_stream(config)
                elif action == "delete":
                    await js.delete_stream(self.stream)
                else:
                    headers = {"Nats-Msg-Id": msg_id}
                    ack = await js.publish(f"{self.subject}.event", data, headers=headers)
                    created = (await js.stream_info(self.stream)).created
                    return ack.seq, stream_epoch_of(created)
                return 0, None
            finally:
                await nc.close()

        return asyncio.run(run())

    def create_scratch(self) -> None:
        self._js("create")

    def drop_scratch(self) -> None:
        self._js("delete")

    def _receiver(self, target: TargetWorkflow, stream: str) -> NatsReceiver:
        receiver = NatsReceiver(RECEIVER, NATS_URL)
        receiver.consumer(
            stream=stream,
            subject=f"{self.subject}.>",
            durable=self.DURABLE,
            workflow_id_from=self.ID_FROM,
            ack_wait=1.0,
        )(target.func)
        return receiver

    def bind(self, target: TargetWorkflow) -> Binding[Any, Any, Any]:
        receiver = self._receiver(target, self.stream)

        def matches(slot: Any) -> bool:
            spec = slot.spec
            return spec is not None and (spec.stream, spec.durable) == (self.stream, self.DURABLE)

        return Binding(
            association=Association(
                registry=receiver._registry,  # pyright: ignore[reportPrivateUsage]
                matches=matches,
            ),
            dispatch_state=NotSupported(
                reason="JetStream's durable consumer keeps the position (a message is "
                "redelivered until acknowledged); the receiver stores no dispatch state"
            ),
        )

    def deliver(self, key: str) -> Delivery:
        sequence, epoch = self._js("publish", key.encode(), key)
        wfid = workflow_id_for(
            receiver=RECEIVER,
            stream=self.stream,
            stream_epoch=epoch,
            durable=self.DURABLE,
            sequence=sequence,
            msg_id=key,
            id_from=self.ID_FROM,
        )
        return Delivery(key=key, workflow_id=wfid)

    def redeliver(self, delivery: Delivery) -> None:
        """Publish it again with its Nats-Msg-Id, after the duplicate window (a publisher
        retrying late): JetStream stores it as a new message."""
        time.sleep(0.15)
        self._js("publish", delivery.key.encode(), delivery.key)

    def event_key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        message: NatsMessage = args[0]
        return message.data.decode()

    def redelivery(self) -> Supported | NotSupported:
        return Supported()

    def delivery_while_down(self) -> Supported | NotSupported:
        return Supported()  # the stream keeps it

    def crash_restart(self) -> Supported | NotSupported:
        return Supported()

    def bind_misconfigured(self, target: TargetWorkflow) -> Misconfiguration | NotSupported:
        missing = f"NOPE_{self.scratch.token}"
        self._receiver(target, missing)
        return Misconfiguration(mentions=[f"stream {missing!r} does not exist", NATS_URL])


class NatsStreamSeqKit(NatsKit):
    """The same consumer with the default ``workflow_id_from="stream_seq"``: a message's
    identity is its stream sequence (and the stream's creation time)."""

    ID_FROM: WorkflowIdFrom = "stream_seq"

    def redelivery(self) -> Supported | NotSupported:
        return NotSupported(
            reason="with workflow_id_from='stream_seq' a republished message is a new message "
            "(a new sequence, so a new workflow by design); only JetStream redelivers the same "
            "message, after a crash or an ack timeout (the crash checks)"
        )


# --- RabbitMQ ------------------------------------------------------------------------------


class RabbitMQKit(ReceiverKit):
    """A consumer of a fresh durable queue; an event is a message with a ``message_id``."""

    @property
    def queue(self) -> str:
        return f"conf-{self.scratch.token}"

    def unreachable(self) -> str | None:
        return _tcp_unreachable(RABBITMQ_URL, 5672)

    def _amqp(self, action: str, body: bytes = b"", message_id: str = "") -> None:
        async def run() -> None:
            conn = await aio_pika.connect(RABBITMQ_URL)
            try:
                channel = await conn.channel(publisher_confirms=True)
                if action == "create":
                    await channel.declare_queue(self.queue, durable=True)
                elif action == "delete":
                    await channel.queue_delete(self.queue)
                else:
                    message = aio_pika.Message(
                        body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                    )
                    await channel.default_exchange.publish(message, routing_key=self.queue)
            finally:
                await conn.close()

        asyncio.run(run())

    def create_scratch(self) -> None:
        self._amqp("create")

    def drop_scratch(self) -> None:
        self._amqp("delete")

    def _receiver(self, target: TargetWorkflow, queue: str) -> RabbitMQReceiver:
        receiver = RabbitMQReceiver(RECEIVER, RABBITMQ_URL)
        receiver.consumer(queue=queue)(target.func)
        return receiver

    def bind(self, target: TargetWorkflow) -> Binding[Any, Any, Any]:
        receiver = self._receiver(target, self.queue)

        def matches(slot: Any) -> bool:
            return slot.spec is not None and slot.spec.queue == self.queue

        return Binding(
            association=Association(
                registry=receiver._registry,  # pyright: ignore[reportPrivateUsage]
                matches=matches,
            ),
            dispatch_state=NotSupported(
                reason="RabbitMQ keeps every unacknowledged message in the queue (requeued "
                "when the connection drops); the receiver stores no dispatch state"
            ),
        )

    def deliver(self, key: str) -> Delivery:
        self._amqp("publish", key.encode(), key)
        return Delivery(key=key, workflow_id=f"{RECEIVER}-{self.queue}-{key}")

    def redeliver(self, delivery: Delivery) -> None:
        """Publish it again with its message_id (a publisher retrying)."""
        self._amqp("publish", delivery.key.encode(), delivery.key)

    def event_key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        message: RabbitMQMessage = args[0]
        return message.body.decode()

    def redelivery(self) -> Supported | NotSupported:
        return Supported()

    def delivery_while_down(self) -> Supported | NotSupported:
        return Supported()  # the queue keeps it

    def crash_restart(self) -> Supported | NotSupported:
        return Supported()

    def bind_misconfigured(self, target: TargetWorkflow) -> Misconfiguration | NotSupported:
        missing = f"no-such-{self.scratch.token}"
        self._receiver(target, missing)
        return Misconfiguration(mentions=[f"queue {missing!r} does not exist"])
