"""One queue consumer bound to one workflow: start the workflow, then acknowledge."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import attrs
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from dbos_rabbitmq_receive._message import (
    MissingMessageId,
    Payload,
    RabbitMQMessage,
    decode_payload,
    workflow_id_for,
)
from dbos_sdk import DBOS, MethodRegistration, StartWorkflowOptions

logger = logging.getLogger("dbos_rabbitmq_receive")

RETRY_DELAY_S = 5.0
"""How long a message whose workflow could not be started is held before it is requeued
(RabbitMQ has no delayed requeue; an immediate one would spin while the database is down)."""


@attrs.frozen(kw_only=True)
class ConsumerSpec:
    """What ``@RabbitMQReceiver.consumer(...)`` was given (validated at decoration)."""

    queue: str
    payload: Payload
    missing_message_id: MissingMessageId
    prefetch: int
    dbos_queue: str | None


class QueueConsumer:
    """Dispatches each delivery of one queue to its workflow.

    aio-pika runs one task per delivery (at most ``prefetch`` unacknowledged at a time),
    so the workflows of a burst are started concurrently; each message is acknowledged
    as soon as *its* start returned (the workflow is then recorded).
    """

    def __init__(
        self, *, receiver: str, spec: ConsumerSpec, reg: MethodRegistration, queue: AbstractQueue
    ) -> None:
        self._receiver = receiver
        self._spec = spec
        self._reg = reg
        self._queue = queue
        self._tag: str | None = None
        self._inflight: set[asyncio.Task[object]] = set()
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._tag = await self._queue.consume(self._on_message)

    async def stop(self) -> None:
        """Stop deliveries; let the messages in progress finish (and be acknowledged)."""
        self._stopping.set()
        if self._tag is not None:
            try:
                await self._queue.cancel(self._tag)
            except Exception:  # the channel may be gone already; closing it follows anyway
                logger.debug("cancelling consumer of %s failed", self._spec.queue, exc_info=True)
        await asyncio.sleep(0)  # let deliveries already dispatched register (or bow out)
        if self._inflight:
            await asyncio.wait(self._inflight)

    async def _on_message(self, delivery: AbstractIncomingMessage) -> None:
        if self._stopping.is_set():
            return  # delivered as the consumer was cancelled: requeued when the channel closes
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._handle(delivery)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _handle(self, delivery: AbstractIncomingMessage) -> None:
        spec = self._spec
        message = RabbitMQMessage(
            body=delivery.body,
            queue=spec.queue,
            exchange=delivery.exchange or "",
            routing_key=delivery.routing_key or "",
            message_id=delivery.message_id,
            correlation_id=delivery.correlation_id,
            content_type=delivery.content_type,
            headers=dict(delivery.headers),
            timestamp=delivery.timestamp,
        )
        where = f"message {message.message_id or '(no message_id)'} from queue {spec.queue!r}"
        workflow_id = workflow_id_for(
            receiver=self._receiver,
            queue=spec.queue,
            message_id=message.message_id,
            body=message.body,
            missing_message_id=spec.missing_message_id,
        )
        if workflow_id is None:
            logger.error(
                "RabbitMQ receiver %r: a message from queue %r has no message_id and "
                "missing_message_id='reject'; rejected without requeue (workflow %r not "
                "started). Have the publisher set message_id.",
                self._receiver,
                spec.queue,
                self._reg.name,
            )
            await _settle(lambda: delivery.reject(requeue=False), self._receiver, where, "reject")
            return
        if delivery.redelivered and not message.message_id and spec.missing_message_id == "random":
            logger.warning(
                "RabbitMQ receiver %r: %s is a redelivery without message_id: it gets a new "
                "random workflow ID and may start workflow %r a second time",
                self._receiver,
                where,
                self._reg.name,
            )
        try:
            arg = decode_payload(message, spec.payload)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            logger.error(
                "RabbitMQ receiver %r: %s cannot be decoded as payload=%r for workflow %r "
                "(%s: %s); rejected without requeue",
                self._receiver,
                where,
                spec.payload,
                self._reg.name,
                type(exc).__name__,
                exc,
            )
            await _settle(lambda: delivery.reject(requeue=False), self._receiver, where, "reject")
            return
        try:
            await DBOS.start_workflow_registered_async(
                self._reg,
                (arg,),
                {},
                StartWorkflowOptions(workflow_id=workflow_id, queue_name=spec.dbos_queue),
            )
        except Exception:
            logger.exception(
                "RabbitMQ receiver %r: starting workflow %r (ID %s) for %s failed; the "
                "message is requeued in %ss",
                self._receiver,
                self._reg.name,
                workflow_id,
                where,
                RETRY_DELAY_S,
            )
            with contextlib.suppress(TimeoutError):  # a stop ends the wait early
                await asyncio.wait_for(self._stopping.wait(), RETRY_DELAY_S)
            await _settle(lambda: delivery.nack(requeue=True), self._receiver, where, "nack")
            return
        # The workflow is recorded: only now may RabbitMQ forget the message.
        await _settle(delivery.ack, self._receiver, where, "ack")


async def _settle(
    action: Callable[[], Awaitable[None]], receiver: str, where: str, what: str
) -> None:
    try:
        await action()
    except Exception as exc:  # channel closed: RabbitMQ requeues the message itself
        logger.warning(
            "RabbitMQ receiver %r: could not %s %s (%s: %s); RabbitMQ will redeliver it",
            receiver,
            what,
            where,
            type(exc).__name__,
            exc,
        )
