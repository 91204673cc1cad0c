"""Typetests: NatsReceiver.consumer keeps a workflow's exact signature and rejects wrong config.

The decorator returns the workflow unchanged, so its parameter names, defaults and return
type survive (sync and async). ``payload`` decides what the workflow's one parameter must
be; a workflow that does not fit, an unknown option value or a missing ``durable`` is a
type error in both checkers. Checked, never run (TYPING.md §4.2).
"""

from datetime import datetime
from typing import assert_type

from dbos_nats_receive import NatsMessage, NatsReceiver, workflow_id_for
from dbos_sdk import DBOS, DBOSLifecycleCallback

recv = NatsReceiver("orders", "nats://127.0.0.1:4222", connect_timeout=2)
as_callback: DBOSLifecycleCallback = recv

msg = NatsMessage(
    subject="orders.new",
    data=b"{}",
    headers={},
    stream="ORDERS",
    sequence=1,
    msg_id=None,
    published_at=datetime.now(),
)

# --- each payload mode keeps the workflow's signature -----------------------------------


@recv.consumer(stream="ORDERS", subject="orders.>", durable="billing")
@DBOS.workflow()
def on_message(msg: NatsMessage, attempt: int = 0) -> int:
    return attempt


assert_type(on_message(msg), int)
assert_type(on_message(msg=msg, attempt=2), int)  # names and defaults survive


@recv.consumer(stream="ORDERS", durable="raw", payload="bytes", workflow_id_from="msg_id")
@DBOS.workflow()
async def on_bytes(data: bytes) -> str:
    return data.decode()


async def awaits_async_workflow() -> None:
    assert_type(await on_bytes(data=b"x"), str)


@recv.consumer(stream="ORDERS", durable="text", payload="text", ack_wait=5, batch=10)
@DBOS.workflow(name="orders.text")
def on_text(text: str) -> list[str]:
    return [text]


assert_type(on_text("x"), list[str])


@recv.consumer(stream="ORDERS", durable="json", payload="json", dbos_queue="q")
@DBOS.workflow()
def on_json(doc: dict[str, int]) -> int:
    return doc["n"]


assert_type(on_json({"n": 1}), int)
assert_type(
    workflow_id_for(
        receiver="r",
        stream="S",
        stream_epoch=None,
        durable="d",
        sequence=1,
        msg_id=None,
        id_from="stream_seq",
    ),
    str,
)

# --- a workflow whose parameter does not fit the payload is rejected ------------------


@recv.consumer(stream="ORDERS", durable="w1", payload="text")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportUntypedFunctionDecorator]
@DBOS.workflow()
def wants_message_gets_text(msg: NatsMessage) -> None: ...


@recv.consumer(stream="ORDERS", durable="w2")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportUntypedFunctionDecorator]
@DBOS.workflow()
def wants_bytes_gets_message(data: bytes) -> None: ...


@recv.consumer(stream="ORDERS", durable="w3")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportUntypedFunctionDecorator]
@DBOS.workflow()
def two_required_parameters(msg: NatsMessage, extra: int) -> None: ...


# --- wrong configuration is rejected ----------------------------------------------------

recv.consumer(stream="ORDERS", durable="d", payload="xml")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
recv.consumer(stream="ORDERS", durable="d", workflow_id_from="uuid")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
recv.consumer(stream="ORDERS", durable="d", ack_wait="30s")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
recv.consumer(stream="ORDERS", durable="d", batch=1.5)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
recv.consumer(stream="ORDERS")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
recv.consumer("ORDERS", "d")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
NatsReceiver("orders", connect_timeout="5")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
msg.data = b""  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
