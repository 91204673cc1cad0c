"""NATS JetStream event receiver for dbos-sdk: every stream message starts one workflow.

```python
from dbos_sdk import DBOS, DBOSConfig
from dbos_nats_receive import NatsMessage, NatsReceiver

DBOS(DBOSConfig("shop"))
orders = NatsReceiver("orders", "nats://127.0.0.1:4222")

@orders.consumer(stream="ORDERS", subject="orders.created", durable="billing")
@DBOS.workflow()
def bill(msg: NatsMessage) -> None: ...

DBOS.launch()
```

The workflow ID comes from the message (its stream sequence, or its ``Nats-Msg-Id``)
and the message is acknowledged only after the workflow was durably started, so a
redelivery never starts a second workflow. Built on the public receiver API of dbos-sdk
only (``dbos_sdk``, ``dbos_sdk.errors``). See docs/receivers-brokers.md.
"""

from dbos_nats_receive._message import (
    MSG_ID_HEADER,
    NatsMessage,
    Payload,
    WorkflowIdFrom,
    decode_payload,
    stream_epoch_of,
    workflow_id_for,
)
from dbos_nats_receive._receiver import NatsReceiver

__all__ = [
    "MSG_ID_HEADER",
    "NatsMessage",
    "NatsReceiver",
    "Payload",
    "WorkflowIdFrom",
    "decode_payload",
    "stream_epoch_of",
    "workflow_id_for",
]
