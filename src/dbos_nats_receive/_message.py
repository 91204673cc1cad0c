"""What a workflow receives from JetStream, and the identity a message gives its workflow.

Pure functions and records: no I/O, so the rules are testable without a server.
"""

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import attrs

Payload = Literal["message", "bytes", "text", "json"]
"""What the workflow's one argument is: the whole :class:`NatsMessage` record, the raw
``bytes``, the data decoded as UTF-8 ``str``, or the data parsed as JSON (dicts, lists,
strings, numbers...). ``"text"`` and ``"json"`` suit ``DBOSConfig(serializer=JSONSerializer())``,
which cannot carry ``bytes`` or records."""

WorkflowIdFrom = Literal["stream_seq", "msg_id"]
"""Where a message's workflow ID comes from: its stream sequence number (every message
has one), or the ``Nats-Msg-Id`` header its publisher set (falling back to the sequence
number for a message without one)."""

MSG_ID_HEADER = "Nats-Msg-Id"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@attrs.frozen(kw_only=True)
class NatsMessage:
    """One JetStream message, as a workflow with ``payload="message"`` receives it.

    It is the workflow's recorded input, so it holds the message's identity and content
    only: nothing about one particular delivery of it.
    """

    subject: str
    data: bytes
    headers: Mapping[str, str]
    stream: str
    sequence: int
    """The message's sequence number in its stream."""
    msg_id: str | None
    """The publisher's ``Nats-Msg-Id`` header, if it set one."""
    published_at: datetime | None
    """When the stream stored the message (UTC)."""

    def text(self, encoding: str = "utf-8") -> str:
        """The data decoded as text."""
        return self.data.decode(encoding)

    def json(self) -> Any:
        """The data parsed as JSON."""
        return json.loads(self.data)


def decode_payload(message: NatsMessage, payload: Payload) -> object:
    """The workflow's argument for ``message``; raises ValueError (or a subclass) when the
    data cannot be decoded as ``payload`` says."""
    if payload == "message":
        return message
    if payload == "bytes":
        return message.data
    if payload == "text":
        return message.data.decode("utf-8")
    return json.loads(message.data)


def workflow_id_for(
    *,
    receiver: str,
    stream: str,
    stream_epoch: int | None,
    durable: str,
    sequence: int,
    msg_id: str | None,
    id_from: WorkflowIdFrom,
) -> str:
    """The workflow ID of one message for one consumer: the same on every redelivery.

    - ``stream_seq``: ``{receiver}-{stream}-{stream_epoch}-{durable}-{sequence}``. The
      stream's creation time (``stream_epoch``, microseconds) is part of the ID because a
      stream that is deleted and created again numbers its messages from 1 again: without
      it, new messages would take the IDs of old, finished workflows and be skipped.
    - ``msg_id``: ``{receiver}-{stream}-{durable}-id-{msg_id}``, so a message published
      twice with one ``Nats-Msg-Id`` (a publisher retry after the stream's duplicate
      window) starts one workflow. A message without the header gets its ``stream_seq`` ID.

    The durable consumer's name is part of both, so two consumers of one stream, bound to
    two workflows, give each message one workflow of each.
    """
    if id_from == "msg_id" and msg_id:
        return f"{receiver}-{stream}-{durable}-id-{msg_id}"
    epoch = f"{stream_epoch}-" if stream_epoch is not None else ""
    return f"{receiver}-{stream}-{epoch}{durable}-{sequence}"


def stream_epoch_of(created: datetime | None) -> int | None:
    """A stream's creation time in whole microseconds since the Unix epoch."""
    if created is None:
        return None
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (created - _EPOCH) // timedelta(microseconds=1)
