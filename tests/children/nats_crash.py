"""A NATS receiver app that the crash test runs as a child process, twice.

``python -m children.nats_crash '<json>'`` with url, stream, subject, sysdb, schema, mode:

- ``die_at_ack``: the first acknowledgement SIGKILLs the process. The receiver calls ack
  only after the workflow start returned, so the process dies exactly between the
  durable start and the acknowledgement. Prints ``dying-at-ack <seq>`` first.
- ``drain``: acknowledgements go through; prints ``acked <seq> delivered=<n>`` for each,
  and ``done`` once ``expect`` messages were acknowledged and every workflow finished.

Only this child wraps the ack: the plugin has no test hooks.
"""

from beartype import BeartypeConf
from beartype.claw import beartype_package

beartype_package("dbos_nats_receive", conf=BeartypeConf(claw_is_pep526=False))

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from nats.aio.msg import Msg  # noqa: E402

from dbos_nats_receive import NatsMessage, NatsReceiver  # noqa: E402
from dbos_sdk import DBOS, DBOSConfig  # noqa: E402

WORKFLOW = "nats_crash.handle"


_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one whole line: the event loop thread and the main thread both print."""
    with _print_lock:
        print(line, flush=True)


def main() -> None:
    args = json.loads(sys.argv[1])
    mode: str = args["mode"]
    expect: int = args.get("expect", 0)
    acked: set[int] = set()
    all_acked = threading.Event()
    original_ack = Msg.ack

    async def ack_and_die(self: Msg) -> None:
        say(f"dying-at-ack {self.metadata.sequence.stream}")
        say("dying")
        os.kill(os.getpid(), signal.SIGKILL)

    async def ack_and_count(self: Msg) -> None:
        await original_ack(self)
        meta = self.metadata
        say(f"acked {meta.sequence.stream} delivered={meta.num_delivered}")
        acked.add(meta.sequence.stream)
        if len(acked) >= expect:
            all_acked.set()

    Msg.ack = ack_and_die if mode == "die_at_ack" else ack_and_count  # type: ignore[method-assign]

    DBOS(
        DBOSConfig("nats-crash", system_database_url=args["sysdb"], postgres_schema=args["schema"])
    )
    receiver = NatsReceiver("crash", args["url"])

    @receiver.consumer(
        stream=args["stream"], subject=args["subject"], durable="crash", ack_wait=1.0
    )
    @DBOS.workflow(name=WORKFLOW)
    def handle(msg: NatsMessage) -> str:
        return msg.data.decode()

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
