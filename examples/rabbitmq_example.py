"""RabbitMQ messages to durable workflows: one workflow per message_id.

    python examples/rabbitmq_example.py    # needs RabbitMQ (RABBITMQ_URL)

Declares the queue ``example-orders`` if missing, publishes two orders (the second one
twice, as a publisher retrying after a lost confirm would), and lets the receiver start
one workflow per ``message_id``: three messages, two workflows. Each message is
acknowledged only after its workflow was durably started, under the ID
``<receiver>-<queue>-<message_id>``, so a redelivery after a crash starts nothing new.
The system database is ``rabbitmq_example.sqlite`` in the current directory.
"""

import asyncio
import json
import os
import time

import aio_pika

from dbos_rabbitmq_receive import RabbitMQMessage, RabbitMQReceiver
from dbos_sdk import DBOS, DBOSConfig

URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
QUEUE = "example-orders"

mq = RabbitMQReceiver("shop", URL)


@DBOS.step()
def reserve_stock(order_id: str) -> str:
    print(f"  reserving stock for {order_id}")
    return f"reserved-{order_id}"


@mq.consumer(queue=QUEUE, missing_message_id="reject")  # no message_id: no identity
@DBOS.workflow()
def on_order(msg: RabbitMQMessage) -> str:
    order = msg.json()
    print(f"workflow {DBOS.workflow_id} for message {msg.message_id}")
    return reserve_stock(order["id"])


async def publish_orders() -> None:
    conn = await aio_pika.connect(URL)
    try:
        channel = await conn.channel(publisher_confirms=True)
        await channel.declare_queue(QUEUE, durable=True)
        stamp = time.strftime("%H%M%S")
        for n in (1, 2, 2):  # order 2 is published twice with one message_id
            order_id = f"o-{stamp}-{n}"
            await channel.default_exchange.publish(
                aio_pika.Message(
                    json.dumps({"id": order_id}).encode(),
                    message_id=order_id,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=QUEUE,
            )
    finally:
        await conn.close()


def main() -> None:
    DBOS(DBOSConfig("rabbitmq-example", system_database_url="sqlite:///rabbitmq_example.sqlite"))
    asyncio.run(publish_orders())
    DBOS.launch()  # connects, checks the queue, starts consuming
    try:
        time.sleep(2)
        for status in DBOS.list_workflows(sort_desc=True, limit=4):
            print(f"{status.workflow_id}: {status.status} {status.output!r}")
    finally:
        DBOS.shutdown()  # cancels the consumer, finishes what is in progress, closes


if __name__ == "__main__":
    main()
