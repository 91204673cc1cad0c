"""One durable pull consumer bound to one workflow: fetch, start, then acknowledge."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import attrs
import nats.errors
from nats.aio.msg import Msg
from nats.js.client import JetStreamContext

from dbos_nats_receive._message import (
    MSG_ID_HEADER,
    NatsMessage,
    Payload,
    WorkflowIdFrom,
    decode_payload,
    workflow_id_for,
)
from dbos_sdk import DBOS, MethodRegistration, StartWorkflowOptions

logger = logging.getLogger("dbos_nats_receive")

FETCH_WAIT_S = 1.0
"""How long one pull request waits for messages; a stop does not wait for it."""

RETRY_DELAY_S = 5.0
"""How long JetStream holds back a message whose workflow could not be started."""


@attrs.frozen(kw_only=True)
class ConsumerSpec:
    """What ``@NatsReceiver.consumer(...)`` was given (validated at decoration)."""

    stream: str
    durable: str
    subject: str | None
    payload: Payload
    workflow_id_from: WorkflowIdFrom
    ack_wait: float
    max_deliver: int | None
    batch: int
    dbos_queue: str | None


class ConsumerLoop:
    """Pulls batches from one durable consumer and dispatches each message to its workflow.

    Runs as one task on the DBOS runtime's event loop. Within a batch the workflows are
    started concurrently; each message is acknowledged as soon as *its* start returned
    (the workflow is then recorded), so a crash at any point leaves every unacknowledged
    message to be redelivered, and its redelivery finds the recorded workflow.
    """

    def __init__(
        self,
        *,
        receiver: str,
        spec: ConsumerSpec,
        reg: MethodRegistration,
        sub: JetStreamContext.PullSubscription,
        stream_epoch: int | None,
    ) -> None:
        self._receiver = receiver
        self._spec = spec
        self._reg = reg
        self._sub = sub
        self._stream_epoch = stream_epoch
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._interruptible = False
        """True while the task waits for messages (or before a retry), where a stop may
        cancel it; False while it dispatches a batch, which a stop lets finish."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"nats-consumer-{self._receiver}-{self._spec.durable}"
        )

    async def stop(self) -> None:
        """Stop pulling; a batch being dispatched finishes first (its messages are acked)."""
        self._stopping = True
        task = self._task
        if task is None:
            return
        if self._interruptible:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        try:
            await self._sub.unsubscribe()
        except Exception:  # the connection may be gone already; closing it follows anyway
            logger.debug("unsubscribing %s failed", self._spec.durable, exc_info=True)

    async def _run(self) -> None:
        while not self._stopping:
            self._interruptible = True
            try:
                msgs = await self._sub.fetch(self._spec.batch, timeout=FETCH_WAIT_S)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except Exception as exc:  # disconnected, or JetStream unavailable: retry
                logger.warning(
                    "NATS receiver %r: pulling from %s/%s failed (%s: %s); retrying in 1s",
                    self._receiver,
                    self._spec.stream,
                    self._spec.durable,
                    type(exc).__name__,
                    exc,
                )
                await asyncio.sleep(1.0)
                continue
            finally:
                self._interruptible = False
            await asyncio.gather(*(self._handle(m) for m in msgs))

    async def _handle(self, msg: Msg) -> None:
        spec = self._spec
        meta = msg.metadata
        headers = dict(msg.headers or {})
        message = NatsMessage(
            subject=msg.subject,
            data=msg.data,
            headers=headers,
            stream=spec.stream,
            sequence=meta.sequence.stream,
            msg_id=headers.get(MSG_ID_HEADER),
            published_at=meta.timestamp,
        )
        where = f"message {spec.stream}#{message.sequence} ({msg.subject})"
        try:
            arg = decode_payload(message, spec.payload)
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            logger.error(
                "NATS receiver %r: %s cannot be decoded as payload=%r for workflow %r "
                "(%s: %s); it is terminated and will not be redelivered",
                self._receiver,
                where,
                spec.payload,
                self._reg.name,
                type(exc).__name__,
                exc,
            )
            await _settle(msg.term, self._receiver, where, "terminate")
            return
        workflow_id = workflow_id_for(
            receiver=self._receiver,
            stream=spec.stream,
            stream_epoch=self._stream_epoch,
            durable=spec.durable,
            sequence=message.sequence,
            msg_id=message.msg_id,
            id_from=spec.workflow_id_from,
        )
        try:
            await DBOS.start_workflow_registered_async(
                self._reg,
                (arg,),
                {},
                StartWorkflowOptions(workflow_id=workflow_id, queue_name=spec.dbos_queue),
            )
        except Exception:
            logger.exception(
                "NATS receiver %r: starting workflow %r (ID %s) for %s failed; the message "
                "will be redelivered in %ss",
                self._receiver,
                self._reg.name,
                workflow_id,
                where,
                RETRY_DELAY_S,
            )
            await _settle(lambda: msg.nak(delay=RETRY_DELAY_S), self._receiver, where, "nak")
            return
        # The workflow is recorded: only now may JetStream forget the message.
        await _settle(msg.ack, self._receiver, where, "ack")


async def _settle(
    action: Callable[[], Awaitable[None]], receiver: str, where: str, what: str
) -> None:
    try:
        await action()
    except Exception as exc:  # connection lost: JetStream redelivers, the workflow ID dedups
        logger.warning(
            "NATS receiver %r: could not %s %s (%s: %s); JetStream will redeliver it",
            receiver,
            what,
            where,
            type(exc).__name__,
            exc,
        )
