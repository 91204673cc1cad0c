"""RabbitMQReceiver: AMQP queue consumers, each bound to one DBOS workflow."""

import asyncio
import contextvars
import inspect
import logging
import re
from collections.abc import Callable
from typing import Any, Literal, TypeVar, overload
from urllib.parse import urlsplit

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractRobustConnection

from dbos_rabbitmq_receive._consumer import ConsumerSpec, QueueConsumer
from dbos_rabbitmq_receive._message import MissingMessageId, Payload, RabbitMQMessage
from dbos_sdk import DBOS, DBOSLifecycleCallback, MethodRegistration, ReceiverRegistry
from dbos_sdk.errors import DBOSConfigurationError, DBOSRegistrationError

logger = logging.getLogger("dbos_rabbitmq_receive")

MessageWorkflowT = TypeVar("MessageWorkflowT", bound=Callable[[RabbitMQMessage], object])
BytesWorkflowT = TypeVar("BytesWorkflowT", bound=Callable[[bytes], object])
TextWorkflowT = TypeVar("TextWorkflowT", bound=Callable[[str], object])
JsonWorkflowT = TypeVar("JsonWorkflowT", bound=Callable[[Any], object])
_WorkflowT = TypeVar("_WorkflowT", bound=Callable[..., object])

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
"""Receiver names: they are part of every workflow ID."""


class _Slot:
    """The receiver's info object for one function (what DBOS stores for it)."""

    spec: ConsumerSpec | None = None


def _nothing() -> None:
    return None


class RabbitMQReceiver(DBOSLifecycleCallback):
    """Starts a DBOS workflow for every message of a RabbitMQ (AMQP 0-9-1) queue.

    Create it at import time (it registers itself with DBOS), bind workflows with
    :meth:`consumer`, then ``DBOS.launch()``: the receiver connects (a robust connection
    that reconnects and resumes consuming), checks that every queue exists (it declares
    nothing: queues, exchanges and bindings are the application's topology), and
    consumes with manual acknowledgements. Each message starts its workflow under an ID
    derived from its ``message_id`` and is acknowledged only once that start returned, so
    a redelivery starts nothing new. ``DBOS.shutdown()`` cancels the consumers, lets the
    messages in progress finish, and closes the connection.

    Redelivery deduplication needs a publisher-set ``message_id`` (aio-pika and aiormq
    publishers set a random one when the application gives none; many other clients set
    none). For messages without one, see ``missing_message_id`` of :meth:`consumer`.

    An unreachable broker or a missing queue fails ``DBOS.launch()`` with a message naming
    the receiver, the workflow and the URL (password hidden).
    """

    def __init__(
        self,
        name: str,
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        connect_timeout: float = 5.0,
    ) -> None:
        if not _NAME_RE.match(name):
            raise DBOSConfigurationError(
                f"RabbitMQReceiver(name={name!r}): use letters, digits, '_' and '-' (the "
                "name is part of every workflow ID this receiver starts)."
            )
        if not url.startswith(("amqp://", "amqps://")):
            raise DBOSConfigurationError(
                f"RabbitMQReceiver({name!r}, url={_redact(url)!r}): give an AMQP URL, e.g. "
                "amqp://user:password@host:5672/vhost."
            )
        if connect_timeout <= 0:
            raise DBOSConfigurationError(
                f"RabbitMQReceiver({name!r}, connect_timeout={connect_timeout!r}) must be positive."
            )
        self.name = name
        self.url = url
        self.connect_timeout = connect_timeout
        self._registry = ReceiverRegistry(
            f"rabbitmq:{name}", class_info=_nothing, method_info=_Slot, param_info=_nothing
        )
        self._connection: AbstractRobustConnection | None = None
        self._consumers: list[QueueConsumer] = []
        DBOS.register_lifecycle_callback(self)

    def __repr__(self) -> str:
        return f"RabbitMQReceiver({self.name!r}, {self.display_url!r})"

    @property
    def display_url(self) -> str:
        """The broker URL, password hidden, as messages and logs show it."""
        return _redact(self.url)

    # --- registration ----------------------------------------------------------------

    @overload
    def consumer(
        self,
        *,
        queue: str,
        payload: Literal["message"] = "message",
        missing_message_id: MissingMessageId = "random",
        prefetch: int = 100,
        dbos_queue: str | None = None,
    ) -> Callable[[MessageWorkflowT], MessageWorkflowT]: ...

    @overload
    def consumer(
        self,
        *,
        queue: str,
        payload: Literal["bytes"],
        missing_message_id: MissingMessageId = "random",
        prefetch: int = 100,
        dbos_queue: str | None = None,
    ) -> Callable[[BytesWorkflowT], BytesWorkflowT]: ...

    @overload
    def consumer(
        self,
        *,
        queue: str,
        payload: Literal["text"],
        missing_message_id: MissingMessageId = "random",
        prefetch: int = 100,
        dbos_queue: str | None = None,
    ) -> Callable[[TextWorkflowT], TextWorkflowT]: ...

    @overload
    def consumer(
        self,
        *,
        queue: str,
        payload: Literal["json"],
        missing_message_id: MissingMessageId = "random",
        prefetch: int = 100,
        dbos_queue: str | None = None,
    ) -> Callable[[JsonWorkflowT], JsonWorkflowT]: ...

    def consumer(
        self,
        *,
        queue: str,
        payload: Payload = "message",
        missing_message_id: MissingMessageId = "random",
        prefetch: int = 100,
        dbos_queue: str | None = None,
    ) -> Callable[[_WorkflowT], _WorkflowT]:
        """Bind a workflow to ``queue``; stack it above ``@DBOS.workflow()``. The workflow
        is returned unchanged (same signature).

        The workflow takes one argument, chosen by ``payload`` (see :data:`Payload`); the
        type checkers reject a workflow whose parameter does not match. The queue must
        exist at launch. Workflow IDs are ``{receiver}-{queue}-{message_id}``; messages
        without a ``message_id`` are handled as ``missing_message_id`` says (see
        :data:`MissingMessageId`; the default, ``"random"``, is at-least-once for them).

        ``prefetch`` is the most unacknowledged messages at a time (the consumer's
        channel QoS), and so the most workflow starts in progress at once. With
        ``dbos_queue``, the workflows are enqueued on that DBOS queue instead of started
        at once (the message is acknowledged once enqueued).
        """
        given = ConsumerSpec(
            queue=queue,
            payload=payload,
            missing_message_id=missing_message_id,
            prefetch=prefetch,
            dbos_queue=dbos_queue,
        )

        def bind(func: _WorkflowT) -> _WorkflowT:
            fn = getattr(func, "__qualname__", repr(func))
            self._validate(given, fn, func)
            for other in DBOS.get_associated_info(self._registry):
                spec = other.method_config.spec
                if spec is not None and spec.queue == queue:
                    raise DBOSRegistrationError(
                        f"RabbitMQ receiver {self.name!r}: queue {queue!r} is bound to "
                        f"{other.method_reg.name!r} already; one workflow per queue (bind "
                        f"{fn} to a queue of its own, e.g. bound to the same exchange)."
                    )
            slot = DBOS.associate_function_with_info(self._registry, func)
            if slot.spec is not None:
                raise DBOSRegistrationError(
                    f"RabbitMQ receiver {self.name!r}: {fn} has a consumer already "
                    f"(queue {slot.spec.queue!r}); bind one consumer per workflow."
                )
            slot.spec = given
            return func

        return bind

    def _validate(self, spec: ConsumerSpec, fn: str, func: Callable[..., object]) -> None:
        where = f"RabbitMQ receiver {self.name!r}, @consumer(...) of {fn}"
        if not spec.queue or spec.queue.startswith("amq."):
            raise DBOSConfigurationError(
                f"{where}: queue={spec.queue!r} is not a queue this receiver can consume "
                "(give the name of an existing, non-'amq.' queue)."
            )
        if not 1 <= spec.prefetch <= 65535:
            raise DBOSConfigurationError(
                f"{where}: prefetch={spec.prefetch!r} must be between 1 and 65535."
            )
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
                    f"RabbitMQ receiver {self.name!r}: the consumer of queue {spec.queue!r} "
                    f"is bound to {reg.name!r}, which is not a DBOS workflow; put "
                    "@receiver.consumer(...) above @DBOS.workflow()."
                )
            out.append((spec, reg))
        return out

    # --- lifecycle (DBOSLifecycleCallback) ----------------------------------------------

    async def initialize(self) -> None:
        """Connect, check every queue, start consuming."""
        bindings = self._bindings()
        if not bindings:
            return
        # In a fresh context: the tasks aio-pika creates for deliveries (and the starts
        # they make) must not inherit whatever the thread that called launch() had set.
        await asyncio.get_running_loop().create_task(
            self._start(bindings), context=contextvars.Context()
        )

    async def _start(self, bindings: list[tuple[ConsumerSpec, MethodRegistration]]) -> None:
        workflows = ", ".join(repr(reg.name) for _, reg in bindings)
        try:
            connection = await asyncio.wait_for(
                aio_pika.connect_robust(self.url, timeout=self.connect_timeout),
                timeout=self.connect_timeout,
            )
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
            raise DBOSConfigurationError(
                f"RabbitMQ receiver {self.name!r} (for workflow {workflows}) cannot connect "
                f"to {self.display_url} within connect_timeout={self.connect_timeout}s: "
                f"{type(exc).__name__}: {str(exc) or 'timed out'}. Start RabbitMQ or fix "
                "RabbitMQReceiver(url=...)."
            ) from exc
        try:
            consumers = [await self._bind(connection, spec, reg) for spec, reg in bindings]
            for consumer in consumers:
                await consumer.start()
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._consumers = consumers

    async def _bind(
        self, connection: AbstractRobustConnection, spec: ConsumerSpec, reg: MethodRegistration
    ) -> QueueConsumer:
        where = (
            f"RabbitMQ receiver {self.name!r} at {self.display_url}, consumer of workflow "
            f"{reg.name!r}"
        )
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=spec.prefetch)
            queue = await channel.declare_queue(spec.queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            raise DBOSConfigurationError(
                f"{where}: queue {spec.queue!r} does not exist. Declare it (with its "
                "bindings) before launch, or fix queue= in @consumer(...)."
            ) from None
        except Exception as exc:
            raise DBOSConfigurationError(
                f"{where}: cannot open queue {spec.queue!r}: {type(exc).__name__}: {exc}."
            ) from exc
        return QueueConsumer(receiver=self.name, spec=spec, reg=reg, queue=queue)

    async def destroy(self) -> None:
        """Cancel the consumers (messages in progress are started and acknowledged
        first), close the connection."""
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*(c.stop() for c in consumers))
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()

    def log_registered_endpoints(self) -> None:
        for spec, reg in self._bindings():
            logger.info(
                "RabbitMQ receiver %r (%s): queue %s -> workflow %s",
                self.name,
                self.display_url,
                spec.queue,
                reg.name,
            )


def _redact(url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        return url
    return url.replace(f":{password}@", ":***@", 1) if password else url
