"""What a workflow receives from RabbitMQ, and the identity a message gives its workflow.

Pure functions and records: no I/O, so the rules are testable without a broker.
"""

import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import attrs

Payload = Literal["message", "bytes", "text", "json"]
"""What the workflow's one argument is: the whole :class:`RabbitMQMessage` record, the
raw body ``bytes``, the body decoded as UTF-8 ``str``, or the body parsed as JSON.
``"text"`` and ``"json"`` suit ``DBOSConfig(serializer=JSONSerializer())``, which cannot
carry ``bytes`` or records."""

MissingMessageId = Literal["random", "body_hash", "reject"]
"""What to do with a message whose publisher set no ``message_id`` (AMQP has no other
stable identity: a delivery tag is per channel and starts again at 1 on every connection).

- ``"random"``: start the workflow under a random ID. At-least-once: a redelivery of
  such a message (after a crash between the start and the acknowledgement, or a lost
  acknowledgement) starts a second workflow.
- ``"body_hash"``: the ID is the SHA-256 of the body. A redelivery starts nothing new,
  but two different messages with equal bodies also count as one.
- ``"reject"``: start nothing; reject the message without requeueing it (it goes to the
  queue's dead-letter exchange, if one is configured) and log an error.
"""


@attrs.frozen(kw_only=True)
class RabbitMQMessage:
    """One AMQP message, as a workflow with ``payload="message"`` receives it.

    It is the workflow's recorded input, so it holds the message's identity and content
    only: nothing about one particular delivery of it (no delivery tag, no redelivered
    flag).
    """

    body: bytes
    queue: str
    exchange: str
    """The exchange it was published to ("" for the default exchange)."""
    routing_key: str
    message_id: str | None
    correlation_id: str | None
    content_type: str | None
    headers: Mapping[str, object]
    timestamp: datetime | None

    def text(self, encoding: str = "utf-8") -> str:
        """The body decoded as text."""
        return self.body.decode(encoding)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def decode_payload(message: RabbitMQMessage, payload: Payload) -> object:
    """The workflow's argument for ``message``; raises ValueError (or a subclass) when the
    body cannot be decoded as ``payload`` says."""
    if payload == "message":
        return message
    if payload == "bytes":
        return message.body
    if payload == "text":
        return message.body.decode("utf-8")
    return json.loads(message.body)


def workflow_id_for(
    *,
    receiver: str,
    queue: str,
    message_id: str | None,
    body: bytes,
    missing_message_id: MissingMessageId,
) -> str | None:
    """The workflow ID of one message, or None when it must be rejected.

    With a ``message_id``: ``{receiver}-{queue}-{message_id}``, the same on every
    redelivery. Without one, as ``missing_message_id`` says (see :data:`MissingMessageId`):
    ``{receiver}-{queue}-sha256-{digest}`` or ``{receiver}-{queue}-random-{uuid}``.
    The queue is part of the ID so that one message routed to two queues (bound to two
    workflows) starts one workflow per queue.
    """
    if message_id:
        return f"{receiver}-{queue}-{message_id}"
    if missing_message_id == "body_hash":
        return f"{receiver}-{queue}-sha256-{hashlib.sha256(body).hexdigest()[:32]}"
    if missing_message_id == "random":
        return f"{receiver}-{queue}-random-{uuid.uuid4().hex}"
    return None
