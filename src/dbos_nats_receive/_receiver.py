"""NatsReceiver: durable JetStream pull consumers, each bound to one DBOS workflow."""

import asyncio
import contextvars
import inspect
import logging
import math
import re
import ssl
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, TypeVar, overload, runtime_checkable
from urllib.parse import urlsplit

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.client import JetStreamContext

from dbos_nats_receive._consumer import ConsumerLoop, ConsumerSpec
from dbos_nats_receive._message import NatsMessage, Payload, WorkflowIdFrom, stream_epoch_of
from dbos_sdk import DBOS, DBOSLifecycleCallback, MethodRegistration, ReceiverRegistry
from dbos_sdk.errors import DBOSConfigurationError, DBOSRegistrationError

logger = logging.getLogger("dbos_nats_receive")

MessageWorkflowT = TypeVar("MessageWorkflowT", bound=Callable[[NatsMessage], object])
BytesWorkflowT = TypeVar("BytesWorkflowT", bound=Callable[[bytes], object])
TextWorkflowT = TypeVar("TextWorkflowT", bound=Callable[[str], object])
JsonWorkflowT = TypeVar("JsonWorkflowT", bound=Callable[[Any], object])
_WorkflowT = TypeVar("_WorkflowT", bound=Callable[..., object])

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
"""Receiver names: they are part of every workflow ID."""

_JS_NAME_RE = re.compile(r"^[^\s.*>/\\\x00-\x1f\x7f]+$")
"""Stream and consumer names, as JetStream allows them (they go into API subjects)."""


@runtime_checkable
class _ConsumerAdmin(Protocol):
    """What this receiver uses of JetStreamContext.add_consumer."""

    async def add_consumer(self, stream: str, config: ConsumerConfig) -> ConsumerInfo: ...


def _admin(js: JetStreamContext) -> _ConsumerAdmin:
    """The typed part of JetStreamContext.add_consumer (its ``**params`` are untyped)."""
    return js


class _Slot:
    """The receiver's info object for one function (what DBOS stores for it)."""

    spec: ConsumerSpec | None = None


def _nothing() -> None:
    return None


class NatsReceiver(DBOSLifecycleCallback):
    """Starts a DBOS workflow for every message of a NATS JetStream stream.

    Create it at import time (it registers itself with DBOS), bind workflows with
    :meth:`consumer`, then ``DBOS.launch()``: the receiver connects, checks every stream,
    creates or updates each durable pull consumer, and starts pulling. Each message starts
    its workflow under an ID derived from the message (see :meth:`consumer`) and is
    acknowledged only once that start returned, so a redelivery (after a crash, a lost
    acknowledgement, an ``ack_wait`` timeout) starts nothing new. ``DBOS.shutdown()``
    stops pulling, lets the batch in progress finish, and closes the connection.

    ``url`` is one server URL or several (a cluster), e.g. ``nats://user:pw@host:4222``.
    An unreachable server, a missing stream or a consumer the server refuses fails
    ``DBOS.launch()`` with a message naming the receiver, the workflow and the URL.
    ``connect_timeout`` bounds how long launch tries to connect; once connected, the
    client reconnects for as long as it takes.
    """

    def __init__(
        self,
        name: str,
        url: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        connect_timeout: float = 5.0,
        tls: ssl.SSLContext | None = None,
        user_credentials: str | None = None,
    ) -> None:
        if not _NAME_RE.match(name):
            raise DBOSConfigurationError(
                f"NatsReceiver(name={name!r}): use letters, digits, '_' and '-' (the name "
                "is part of every workflow ID this receiver starts)."
            )
        urls = [url] if isinstance(url, str) else list(url)
        if not urls or not all(urls):
            raise DBOSConfigurationError(
                f"NatsReceiver({name!r}, url={url!r}): give at least one server URL, "
                "e.g. nats://127.0.0.1:4222."
            )
        if connect_timeout <= 0:
            raise DBOSConfigurationError(
                f"NatsReceiver({name!r}, connect_timeout={connect_timeout!r}) must be positive."
            )
        self.name = name
        self.urls: Sequence[str] = tuple(urls)
        self.connect_timeout = connect_timeout
        self._tls = tls
        self._user_credentials = user_credentials
        self._registry = ReceiverRegistry(
            f"nats:{name}", class_info=_nothing, method_info=_Slot, param_info=_nothing
        )
        self._client: Client | None = None
        self._loops: list[ConsumerLoop] = []
        DBOS.register_lifecycle_callback(self)

    def __repr__(self) -> str:
        return f"NatsReceiver({self.name!r}, {self.display_url!r})"

    @property
    def display_url(self) -> str:
        """The server URL(s), passwords hidden, as messages and logs show them."""
        return ",".join(_redact(u) for u in self.urls)

    # --- registration ----------------------------------------------------------------

    @overload
    def consumer(
        self,
        *,
        stream: str,
        durable: str,
        subject: str | None = None,
        payload: Literal["message"] = "message",
        workflow_id_from: WorkflowIdFrom = "stream_seq",
        ack_wait: float = 30.0,
        max_deliver: int | None = None,
        batch: int = 100,
        dbos_queue: str | None = None,
    ) -> Callable[[MessageWorkflowT], MessageWorkflowT]: ...

    @overload
    def consumer(
        self,
        *,
        stream: str,
        durable: str,
        subject: str | None = None,
        payload: Literal["bytes"],
        workflow_id_from: WorkflowIdFrom = "stream_seq",
        ack_wait: float = 30.0,
        max_deliver: int | None = None,
        batch: int = 100,
        dbos_queue: str | None = None,
    ) -> Callable[[BytesWorkflowT], BytesWorkflowT]: ...

    @overload
    def consumer(
        self,
        *,
        stream: str,
        durable: str,
        subject: str | None = None,
        payload: Literal["text"],
        workflow_id_from: WorkflowIdFrom = "stream_seq",
        ack_wait: float = 30.0,
        max_deliver: int | None = None,
        batch: int = 100,
        dbos_queue: str | None = None,
    ) -> Callable[[TextWorkflowT], TextWorkflowT]: ...

    @overload
    def consumer(
        self,
        *,
        stream: str,
        durable: str,
        subject: str | None = None,
        payload: Literal["json"],
        workflow_id_from: WorkflowIdFrom = "stream_seq",
        ack_wait: float = 30.0,
        max_deliver: int | None = None,
        batch: int = 100,
        dbos_queue: str | None = None,
    ) -> Callable[[JsonWorkflowT], JsonWorkflowT]: ...

    def consumer(
        self,
        *,
        stream: str,
        durable: str,
        subject: str | None = None,
        payload: Payload = "message",
        workflow_id_from: WorkflowIdFrom = "stream_seq",
        ack_wait: float = 30.0,
        max_deliver: int | None = None,
        batch: int = 100,
        dbos_queue: str | None = None,
    ) -> Callable[[_WorkflowT], _WorkflowT]:
        """Bind a workflow to a durable pull consumer of ``stream``; stack it above
        ``@DBOS.workflow()``. The workflow is returned unchanged (same signature).

        The workflow takes one argument, chosen by ``payload`` (see :data:`Payload`); the
        type checkers reject a workflow whose parameter does not match. ``subject``
        filters the stream (default: all of it); ``durable`` names the consumer, and with
        it the position in the stream, so keep it stable across deployments. A new
        consumer starts at the beginning of the stream.

        Workflow IDs (see :func:`workflow_id_for`): by ``workflow_id_from="stream_seq"``,
        ``{receiver}-{stream}-{stream creation time}-{durable}-{sequence}``; by
        ``"msg_id"``, ``{receiver}-{stream}-{durable}-id-{Nats-Msg-Id}``.

        ``ack_wait`` is how long JetStream waits for an acknowledgement before it
        redelivers; ``max_deliver`` caps deliveries (default: unlimited). ``batch`` is
        the most messages pulled and started at once. With ``dbos_queue``, the workflows
        are enqueued on that DBOS queue instead of started at once (the message is
        acknowledged once enqueued).
        """
        given = ConsumerSpec(
            stream=stream,
            durable=durable,
            subject=subject,
            payload=payload,
            workflow_id_from=workflow_id_from,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            batch=batch,
            dbos_queue=dbos_queue,
        )

        def bind(func: _WorkflowT) -> _WorkflowT:
            fn = getattr(func, "__qualname__", repr(func))
            self._validate(given, fn, func)
            for other in DBOS.get_associated_info(self._registry):
                spec = other.method_config.spec
                if spec is not None and (spec.stream, spec.durable) == (stream, durable):
                    raise DBOSRegistrationError(
                        f"NATS receiver {self.name!r}: durable consumer {durable!r} of stream "
                        f"{stream!r} is bound to {other.method_reg.name!r} already; give "
                        f"{fn} its own durable=."
                    )
            slot = DBOS.associate_function_with_info(self._registry, func)
            if slot.spec is not None:
                raise DBOSRegistrationError(
                    f"NATS receiver {self.name!r}: {fn} has a consumer already "
                    f"(stream {slot.spec.stream!r}); bind one consumer per workflow."
                )
            slot.spec = given
            return func

        return bind

    def _validate(self, spec: ConsumerSpec, fn: str, func: Callable[..., object]) -> None:
        where = f"NATS receiver {self.name!r}, @consumer(...) of {fn}"
        for setting, value in (("stream", spec.stream), ("durable", spec.durable)):
            if not _JS_NAME_RE.match(value):
                raise DBOSConfigurationError(
                    f"{where}: {setting}={value!r} is not a valid JetStream name (no "
                    "whitespace, '.', '*', '>', '/' or '\\')."
                )
        if spec.subject is not None and (
            not spec.subject or any(c.isspace() for c in spec.subject)
        ):
            raise DBOSConfigurationError(
                f"{where}: subject={spec.subject!r} is not a NATS subject (e.g. 'orders.>')."
            )
        if not spec.ack_wait > 0:
            raise DBOSConfigurationError(
                f"{where}: ack_wait={spec.ack_wait!r} must be a positive number of seconds."
            )
        if spec.max_deliver is not None and spec.max_deliver < 1:
            raise DBOSConfigurationError(
                f"{where}: max_deliver={spec.max_deliver!r} must be at least 1 (or None)."
            )
        if spec.batch < 1:
            raise DBOSConfigurationError(f"{where}: batch={spec.batch!r} must be at least 1.")
        try:
            inspect.signature(func).bind(None)
        except TypeError:
            raise DBOSConfigurationError(
                f"{where}: the workflow must take exactly one positional argument (the "
                f"message payload), not {inspect.signature(func)}."
            ) from None
        except ValueError:  # no signature to inspect (a builtin): leave it to the call
            pass

    def _bindings(self) -> list[tuple[ConsumerSpec, MethodRegistration]]:
        out: list[tuple[ConsumerSpec, MethodRegistration]] = []
        for assoc in DBOS.get_associated_info(self._registry):
            spec = assoc.method_config.spec
            if spec is None:
                continue
            reg = assoc.method_reg
            if reg.kind != "workflow":
                raise DBOSConfigurationError(
                    f"NATS receiver {self.name!r}: the consumer of stream {spec.stream!r} "
                    f"(durable {spec.durable!r}) is bound to {reg.name!r}, which is not a "
                    "DBOS workflow; put @receiver.consumer(...) above @DBOS.workflow()."
                )
            out.append((spec, reg))
        return out

    # --- lifecycle (DBOSLifecycleCallback) ----------------------------------------------

    async def initialize(self) -> None:
        """Connect, check every stream, create or update the consumers, start pulling."""
        bindings = self._bindings()
        if not bindings:
            return
        # In a fresh context: the tasks created below (and the starts they make) must not
        # inherit whatever the thread that called DBOS.launch() had set.
        await asyncio.get_running_loop().create_task(
            self._start(bindings), context=contextvars.Context()
        )

    async def _start(self, bindings: list[tuple[ConsumerSpec, MethodRegistration]]) -> None:
        client = await self._connect([reg.name for _, reg in bindings])
        try:
            js = JetStreamContext(client)
            loops = [await self._bind(js, spec, reg) for spec, reg in bindings]
        except BaseException:
            await client.close()
            raise
        self._client = client
        self._loops = loops
        for loop in loops:
            loop.start()

    async def _connect(self, workflows: list[str]) -> Client:
        connected = False
        failures: list[Exception] = []

        async def on_error(exc: Exception) -> None:
            if connected:
                logger.warning("NATS receiver %r: %s: %s", self.name, type(exc).__name__, exc)
            else:
                failures.append(exc)

        client = Client()
        try:
            await asyncio.wait_for(
                client.connect(
                    servers=list(self.urls),
                    name=f"dbos-{self.name}",
                    error_cb=on_error,
                    connect_timeout=max(1, math.ceil(self.connect_timeout)),
                    reconnect_time_wait=1,
                    max_reconnect_attempts=-1,
                    tls=self._tls,
                    user_credentials=self._user_credentials,
                ),
                timeout=self.connect_timeout,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await client.close()
            cause: BaseException = failures[-1] if failures else exc
            raise DBOSConfigurationError(
                f"NATS receiver {self.name!r} (for {_names(workflows)}) cannot connect to "
                f"{self.display_url} within connect_timeout={self.connect_timeout}s: "
                f"{type(cause).__name__}: {str(cause) or 'timed out'}. Start the NATS server "
                "(with JetStream: nats-server -js) or fix NatsReceiver(url=...)."
            ) from exc
        connected = True
        return client

    async def _bind(
        self, js: JetStreamContext, spec: ConsumerSpec, reg: MethodRegistration
    ) -> ConsumerLoop:
        where = (
            f"NATS receiver {self.name!r} at {self.display_url}, consumer of workflow {reg.name!r}"
        )
        try:
            info = await js.stream_info(spec.stream)
        except nats.js.errors.NotFoundError:
            raise DBOSConfigurationError(
                f"{where}: stream {spec.stream!r} does not exist. Create it (e.g. nats "
                f"stream add {spec.stream} --subjects ...) or fix stream= in @consumer(...)."
            ) from None
        except Exception as exc:
            raise DBOSConfigurationError(
                f"{where}: cannot look up stream {spec.stream!r} ({type(exc).__name__}: "
                f"{exc}); is JetStream enabled on the server (nats-server -js)?"
            ) from exc
        config = ConsumerConfig(
            name=spec.durable,
            durable_name=spec.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=spec.ack_wait,
            max_deliver=spec.max_deliver,
            filter_subject=spec.subject,
        )
        try:
            await _admin(js).add_consumer(spec.stream, config)
            sub = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        except Exception as exc:
            raise DBOSConfigurationError(
                f"{where}: cannot create or update durable consumer {spec.durable!r} on "
                f"stream {spec.stream!r} (subject={spec.subject!r}): {type(exc).__name__}: "
                f"{exc}."
            ) from exc
        return ConsumerLoop(
            receiver=self.name,
            spec=spec,
            reg=reg,
            sub=sub,
            stream_epoch=stream_epoch_of(info.created),
        )

    async def destroy(self) -> None:
        """Stop pulling (a batch in progress is started and acknowledged first), close."""
        loops, self._loops = self._loops, []
        await asyncio.gather(*(loop.stop() for loop in loops))
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def log_registered_endpoints(self) -> None:
        for spec, reg in self._bindings():
            logger.info(
                "NATS receiver %r (%s): stream %s, subject %s, durable %s -> workflow %s",
                self.name,
                self.display_url,
                spec.stream,
                spec.subject or "(all)",
                spec.durable,
                reg.name,
            )


def _names(workflows: list[str]) -> str:
    return "workflow " + ", ".join(repr(w) for w in workflows)


def _redact(url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        return url
    return url.replace(f":{password}@", ":***@", 1) if password else url
