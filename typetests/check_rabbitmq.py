"""Typetests: RabbitMQReceiver.consumer keeps a workflow's exact signature and rejects
wrong config.

The decorator returns the workflow unchanged (names, defaults, return type; sync and
async). ``payload`` decides what the workflow's one parameter must be, so a workflow
taking a NATS message, or a workflow that does not fit its payload, is a type error; so
are unknown ``missing_message_id`` values and misspelt options. Checked, never run.
"""

from typing import assert_type

from dbos_nats_receive import NatsMessage
from dbos_rabbitmq_receive import (
    MissingMessageId,
    RabbitMQMessage,
    RabbitMQReceiver,
    workflow_id_for,
)
from dbos_sdk import DBOS, DBOSLifecycleCallback

mq = RabbitMQReceiver("mq", "amqp://guest:guest@127.0.0.1:5672/", connect_timeout=2)
as_callback: DBOSLifecycleCallback = mq

msg = RabbitMQMessage(
    body=b"{}",
    queue="orders",
    exchange="",
    routing_key="orders",
    message_id="m-1",
    correlation_id=None,
    content_type="application/json",
    headers={"attempt": 1},
    timestamp=None,
)

# --- each payload mode keeps the workflow's signature -----------------------------------


@mq.consumer(queue="orders")
@DBOS.workflow()
def on_message(msg: RabbitMQMessage, attempt: int = 0) -> int:
    return attempt


assert_type(on_message(msg), int)
assert_type(on_message(msg=msg, attempt=2), int)  # names and defaults survive


@mq.consumer(queue="raw", payload="bytes", missing_message_id="body_hash", prefetch=10)
@DBOS.workflow()
async def on_bytes(body: bytes) -> str:
    return body.decode()


async def awaits_async_workflow() -> None:
    assert_type(await on_bytes(body=b"x"), str)


@mq.consumer(queue="text", payload="text", missing_message_id="reject")
@DBOS.workflow(name="mq.text")
def on_text(text: str) -> list[str]:
    return [text]


assert_type(on_text("x"), list[str])


@mq.consumer(queue="json", payload="json", dbos_queue="q")
@DBOS.workflow()
def on_json(doc: dict[str, int]) -> int:
    return doc["n"]


assert_type(on_json({"n": 1}), int)
policy: MissingMessageId = "random"
assert_type(
    workflow_id_for(receiver="r", queue="q", message_id=None, body=b"", missing_message_id=policy),
    str | None,
)

# --- a workflow whose parameter does not fit the payload is rejected ------------------


@mq.consumer(queue="w1")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportUntypedFunctionDecorator]
@DBOS.workflow()
def takes_a_nats_message(msg: NatsMessage) -> None: ...


@mq.consumer(queue="w2", payload="bytes")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportUntypedFunctionDecorator]
@DBOS.workflow()
def wants_text_gets_bytes(text: str) -> None: ...


@mq.consumer(queue="w3", payload="text")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportUntypedFunctionDecorator]
@DBOS.workflow()
def two_required_parameters(text: str, extra: int) -> None: ...


# --- wrong configuration is rejected ----------------------------------------------------

mq.consumer(queue="q", missing_message_id="skip")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
mq.consumer(queue="q", payload="xml")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
mq.consumer(queue="q", prefetch="10")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
mq.consumer(queue="q", stream="S")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
mq.consumer()  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
RabbitMQReceiver("mq", url=None)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
msg.body = b""  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
