"""A RabbitMQ receiver app that the crash test runs as a child process, twice.

``python -m children.rmq_crash '<json>'`` with url, queue, sysdb, schema, mode:

- ``die_at_ack``: the first acknowledgement SIGKILLs the process. The receiver calls ack
  only after the workflow start returned, so the process dies exactly between the
  durable start and the acknowledgement; RabbitMQ requeues every unacknowledged message
  when the connection drops. Prints ``dying-at-ack <message_id>`` first.
- ``drain``: acknowledgements go through; prints ``acked <message_id> redelivered=<0|1>``
  for each, and ``done`` once ``expect`` messages were acknowledged and every workflow
  finished.

Only this child wraps the ack: the plugin has no test hooks.
"""

from beartype import BeartypeConf
from beartype.claw import beartype_package

beartype_package("dbos_rabbitmq_receive", conf=BeartypeConf(claw_is_pep526=False))

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from aio_pika.message import IncomingMessage  # noqa: E402

from dbos_rabbitmq_receive import RabbitMQMessage, RabbitMQReceiver  # noqa: E402
from dbos_sdk import DBOS, DBOSConfig  # noqa: E402

WORKFLOW = "rmq_crash.handle"


_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one whole line: the event loop thread and the main thread both print."""
    with _print_lock:
        print(line, flush=True)


def main() -> None:
    args = json.loads(sys.argv[1])
    mode: str = args["mode"]
    expect: int = args.get("expect", 0)
    acked: set[str] = set()
    all_acked = threading.Event()
    original_ack = IncomingMessage.ack

    async def ack_and_die(self: IncomingMessage, multiple: bool = False) -> None:
        say(f"dying-at-ack {self.message_id}")
        say("dying")
        os.kill(os.getpid(), signal.SIGKILL)

    async def ack_and_count(self: IncomingMessage, multiple: bool = False) -> None:
        await original_ack(self, multiple)
        say(f"acked {self.message_id} redelivered={int(bool(self.redelivered))}")
        acked.add(str(self.message_id))
        if len(acked) >= expect:
            all_acked.set()

    IncomingMessage.ack = ack_and_die if mode == "die_at_ack" else ack_and_count  # type: ignore[method-assign]

    DBOS(DBOSConfig("rmq-crash", system_database_url=args["sysdb"], postgres_schema=args["schema"]))
    receiver = RabbitMQReceiver("crash", args["url"])

    @receiver.consumer(queue=args["queue"])
    @DBOS.workflow(name=WORKFLOW)
    def handle(msg: RabbitMQMessage) -> str:
        return msg.text()

    DBOS.launch()
    say("launched")
    if mode == "die_at_ack":
        threading.Event().wait()  # until the first ack kills the process
    if not all_acked.wait(timeout=30):
        say(f"only acked {sorted(acked)}")
        sys.exit(1)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        statuses = DBOS.list_workflows(name=WORKFLOW)
        if statuses and all(s.status == "SUCCESS" for s in statuses):
            break
        time.sleep(0.05)
    DBOS.shutdown()
    say("done")


if __name__ == "__main__":
    main()
