"""NATS JetStream messages to durable workflows: one workflow per stream message.

    python examples/nats_example.py        # needs nats-server -js (NATS_URL)

Creates the stream ``EXAMPLE_ORDERS`` (subjects ``example.orders.>``) if missing,
publishes two orders, and lets the receiver start one workflow per message. Each message
is acknowledged only after its workflow was durably started, under the ID
``<receiver>-<stream>-<stream creation time>-<durable>-<sequence>``: run the example
again and the orders published before start nothing new (the durable consumer ``billing``
remembers its position, and a redelivered message finds its workflow), only the two new
ones run. The system database is ``nats_example.sqlite`` in the current directory.
"""

import asyncio
import json
import os
import time

import nats
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from dbos_nats_receive import NatsMessage, NatsReceiver
from dbos_sdk import DBOS, DBOSConfig

URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
STREAM = "EXAMPLE_ORDERS"

orders = NatsReceiver("orders", URL)


@DBOS.step()
def charge(order_id: str, cents: int) -> str:
    print(f"  charging order {order_id}: {cents} cents")
    return f"receipt-{order_id}"


@orders.consumer(stream=STREAM, subject="example.orders.created", durable="billing")
@DBOS.workflow()
def bill(msg: NatsMessage) -> str:
    """Runs once per message; ``DBOS.workflow_id`` is derived from the message."""
    order = msg.json()
    print(f"workflow {DBOS.workflow_id} for {msg.subject} #{msg.sequence}")
    return charge(order["id"], order["cents"])


@orders.consumer(
    stream=STREAM,
    subject="example.orders.cancelled",
    durable="refunds",
    payload="json",
    workflow_id_from="msg_id",
)
@DBOS.workflow()
async def refund(order: dict[str, str]) -> None:
    """``payload="json"``: the workflow takes the parsed body; with ``msg_id`` IDs, a
    cancellation published twice (same Nats-Msg-Id) is refunded once."""
    print(f"workflow {DBOS.workflow_id}: refund {order['id']}")


async def publish_orders() -> None:
    nc = await nats.connect(URL)
    try:
        js = nc.jetstream()
        try:
            await js.stream_info(STREAM)
        except NotFoundError:
            await js.add_stream(StreamConfig(name=STREAM, subjects=["example.orders.>"]))
        stamp = time.strftime("%H%M%S")
        await js.publish(
            "example.orders.created", json.dumps({"id": f"o-{stamp}", "cents": 1999}).encode()
        )
        cancel = json.dumps({"id": f"o-{stamp}"}).encode()
        await js.publish(
            "example.orders.cancelled", cancel, headers={"Nats-Msg-Id": f"cancel-o-{stamp}"}
        )
    finally:
        await nc.close()


def main() -> None:
    DBOS(DBOSConfig("nats-example", system_database_url="sqlite:///nats_example.sqlite"))
    asyncio.run(publish_orders())
    DBOS.launch()  # connects, checks the stream, creates/updates the consumers
    try:
        time.sleep(2)
        for status in DBOS.list_workflows(sort_desc=True, limit=6):
            print(f"{status.workflow_id}: {status.status} {status.output!r}")
    finally:
        DBOS.shutdown()  # stops pulling, finishes the batch in progress, closes


if __name__ == "__main__":
    main()
