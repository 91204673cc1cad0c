"""RabbitMQ event receiver for dbos-sdk: every queue message starts one workflow.

```python
from dbos_sdk import DBOS, DBOSConfig
from dbos_rabbitmq_receive import RabbitMQMessage, RabbitMQReceiver

DBOS(DBOSConfig("shop"))
mq = RabbitMQReceiver("mq", "amqp://guest:guest@127.0.0.1:5672/")

@mq.consumer(queue="orders")
@DBOS.workflow()
def on_order(msg: RabbitMQMessage) -> None: ...

DBOS.launch()
```

The workflow ID comes from the message's ``message_id`` and the message is acknowledged
only after the workflow was durably started, so a redelivery never starts a second
workflow, as long as the publisher set a ``message_id`` (see :data:`MissingMessageId`).
Built on the public receiver API of dbos-sdk only. See docs/receivers-brokers.md.
"""

from dbos_rabbitmq_receive._message import (
    MissingMessageId,
    Payload,
    RabbitMQMessage,
    decode_payload,
    workflow_id_for,
)
from dbos_rabbitmq_receive._receiver import RabbitMQReceiver

__all__ = [
    "MissingMessageId",
    "Payload",
    "RabbitMQMessage",
    "RabbitMQReceiver",
    "decode_payload",
    "workflow_id_for",
]
