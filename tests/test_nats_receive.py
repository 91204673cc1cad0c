"""The NATS JetStream receiver against a real nats-server (-js): one workflow per message.

The crash test SIGKILLs a real child process between the durable workflow start and the
acknowledgement; every other test runs the receiver in this process.
"""

import time
from collections.abc import Generator
from pathlib import Path

import pytest

from _brokers import (
    Stream,
    finished_workflows,
    forget_receivers,
    nats_consumer_state,
    nats_publish,
    nats_stream,
    nats_stream_epoch,
    nats_url,
    unused_port,
    wait_until,
)
from children.harness import Spawner
from conftest import ConfigFactory
from dbos_nats_receive import NatsMessage, NatsReceiver, workflow_id_for
from dbos_sdk import DBOS, DBOSLaunchError
from dbos_sdk.errors import DBOSConfigurationError, DBOSRegistrationError

__all__ = ["forget_receivers", "nats_stream", "nats_url"]  # fixtures, used by name

pytestmark = pytest.mark.usefixtures("forget_receivers")


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """SQLite unless a test asks for more (each broker test costs real time)."""
    return str(request.param)


@pytest.fixture
def spawn(tmp_path: Path) -> Generator[Spawner, None, None]:
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.cleanup()


def _ids(receiver: str, stream: Stream, durable: str, seqs: list[int]) -> set[str]:
    epoch = nats_stream_epoch(stream.url, stream.name)
    return {
        workflow_id_for(
            receiver=receiver,
            stream=stream.name,
            stream_epoch=epoch,
            durable=durable,
            sequence=s,
            msg_id=None,
            id_from="stream_seq",
        )
        for s in seqs
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_each_message_starts_one_workflow_with_an_id_from_its_stream_sequence(
    nats_stream: Stream, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = NatsReceiver("orders", nats_stream.url)

    @receiver.consumer(stream=nats_stream.name, subject=f"{nats_stream.subject}.>", durable="d1")
    @DBOS.workflow(name="nats.orders")
    def on_order(msg: NatsMessage) -> str:
        return f"{msg.subject}|{msg.text()}|{msg.sequence}|{DBOS.workflow_id}"

    before = nats_publish(nats_stream.url, f"{nats_stream.subject}.new", [b"a", b"b", b"c"])
    DBOS.launch()
    after = nats_publish(nats_stream.url, f"{nats_stream.subject}.new", [b"d", b"e"])
    done = finished_workflows("nats.orders", 5)

    expected = _ids("orders", nats_stream, "d1", before + after)
    assert {s.workflow_id for s in done} == expected
    outputs = {s.output for s in done}
    assert outputs == {
        f"{nats_stream.subject}.new|{data}|{seq}|{wfid}"
        for data, seq in zip("abcde", before + after, strict=True)
        for wfid in expected
        if wfid.endswith(f"-{seq}")
    }
    # Every message was acknowledged (nothing pending or awaiting an ack) ...
    wait_until(
        lambda: nats_consumer_state(nats_stream.url, nats_stream.name, "d1") == (0, 0),
        "the consumer to have acknowledged every message",
    )
    # ... and no redelivery or late message started anything more.
    time.sleep(0.3)
    assert len(DBOS.list_workflows(name="nats.orders")) == 5


def test_one_msg_id_published_twice_starts_one_workflow_in_msg_id_mode(
    nats_stream: Stream, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = NatsReceiver("pay", nats_stream.url)

    @receiver.consumer(stream=nats_stream.name, durable="p", workflow_id_from="msg_id")
    @DBOS.workflow(name="nats.pay")
    def on_payment(msg: NatsMessage) -> str:
        return msg.text()

    subject = f"{nats_stream.subject}.pay"
    first = nats_publish(nats_stream.url, subject, [b"x", b"no-id"], ["pay-1", None])
    time.sleep(0.15)  # past the stream's 100 ms duplicate window: JetStream stores it again
    again = nats_publish(nats_stream.url, subject, [b"x"], ["pay-1"])
    assert again[0] not in first  # a second stream message, with the same Nats-Msg-Id
    DBOS.launch()
    done = finished_workflows("nats.pay", 2)
    epoch = nats_stream_epoch(nats_stream.url, nats_stream.name)
    assert {s.workflow_id for s in done} == {
        "pay-" + nats_stream.name + "-p-id-pay-1",
        f"pay-{nats_stream.name}-{epoch}-p-{first[1]}",  # no header: the sequence ID
    }
    wait_until(
        lambda: nats_consumer_state(nats_stream.url, nats_stream.name, "p") == (0, 0),
        "all three messages acknowledged",
    )
    assert len(DBOS.list_workflows(name="nats.pay")) == 2


def test_payload_modes_give_bytes_text_or_json_to_sync_and_async_workflows(
    nats_stream: Stream, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = NatsReceiver("modes", nats_stream.url)
    s = nats_stream.subject

    @receiver.consumer(stream=nats_stream.name, subject=f"{s}.b", durable="b", payload="bytes")
    @DBOS.workflow(name="nats.bytes")
    async def on_bytes(data: bytes) -> int:
        return len(data)

    @receiver.consumer(stream=nats_stream.name, subject=f"{s}.t", durable="t", payload="text")
    @DBOS.workflow(name="nats.text")
    def on_text(text: str) -> str:
        return text.upper()

    @receiver.consumer(stream=nats_stream.name, subject=f"{s}.j", durable="j", payload="json")
    @DBOS.workflow(name="nats.json")
    async def on_json(doc: dict[str, int]) -> int:
        return doc["n"] * 2

    nats_publish(nats_stream.url, f"{s}.b", [b"\x00\xff\x10"])
    nats_publish(nats_stream.url, f"{s}.t", ["héllo".encode()])
    nats_publish(nats_stream.url, f"{s}.j", [b'{"n": 21}', b"not json"])
    DBOS.launch()
    assert [w.output for w in finished_workflows("nats.bytes", 1)] == [3]
    assert [w.output for w in finished_workflows("nats.text", 1)] == ["HÉLLO"]
    assert [w.output for w in finished_workflows("nats.json", 1)] == [42]
    # The undecodable message was terminated (not redelivered), and started nothing.
    wait_until(
        lambda: nats_consumer_state(nats_stream.url, nats_stream.name, "j") == (0, 0),
        "the undecodable message to be terminated",
    )
    assert len(DBOS.list_workflows(name="nats.json")) == 1


def test_the_receiver_connects_at_launch_and_stops_consuming_at_shutdown(
    nats_stream: Stream, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = NatsReceiver("life", nats_stream.url)

    @receiver.consumer(stream=nats_stream.name, durable="life")
    @DBOS.workflow(name="nats.life")
    def on_event(msg: NatsMessage) -> bytes:
        return msg.data

    subject = f"{nats_stream.subject}.e"
    DBOS.launch()
    nats_publish(nats_stream.url, subject, [b"1"])
    finished_workflows("nats.life", 1)
    DBOS.shutdown()

    nats_publish(nats_stream.url, subject, [b"2"])
    time.sleep(0.5)
    assert nats_consumer_state(nats_stream.url, nats_stream.name, "life") == (1, 0)

    DBOS.launch()  # the same registrations, a new runtime: the receiver connects again
    assert sorted(w.output for w in finished_workflows("nats.life", 2)) == [b"1", b"2"]


def test_an_unknown_stream_fails_launch_naming_receiver_function_and_url(
    nats_url: str, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = NatsReceiver("nostream", nats_url)

    @receiver.consumer(stream="NO_SUCH_STREAM_X", durable="d")
    @DBOS.workflow(name="nats.nostream")
    def on_msg(msg: NatsMessage) -> None:
        return None

    with pytest.raises(DBOSLaunchError) as err:
        DBOS.launch()
    text = str(err.value)
    for part in ("'nostream'", "'nats.nostream'", nats_url, "'NO_SUCH_STREAM_X'", "does not exist"):
        assert part in text, (part, text)


def test_an_unreachable_server_fails_launch_naming_receiver_function_and_url(
    make_config: ConfigFactory,
) -> None:
    DBOS(make_config())
    url = f"nats://127.0.0.1:{unused_port()}"
    receiver = NatsReceiver("down", url, connect_timeout=1.0)

    @receiver.consumer(stream="ANY", durable="d")
    @DBOS.workflow(name="nats.down")
    def on_msg(msg: NatsMessage) -> None:
        return None

    started = time.monotonic()
    with pytest.raises(DBOSLaunchError) as err:
        DBOS.launch()
    assert time.monotonic() - started < 5
    text = str(err.value)
    for part in ("'down'", "'nats.down'", url, "cannot connect", "ConnectionRefusedError"):
        assert part in text, (part, text)


def test_a_consumer_on_a_function_that_is_not_a_workflow_fails_launch(
    nats_stream: Stream, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = NatsReceiver("plain", nats_stream.url)

    @receiver.consumer(stream=nats_stream.name, durable="d")
    def not_a_workflow(msg: NatsMessage) -> None:
        return None

    with pytest.raises(DBOSLaunchError, match=r"not_a_workflow.*not a DBOS workflow"):
        DBOS.launch()


def test_bad_consumer_settings_are_rejected_where_they_enter(nats_url: str) -> None:
    receiver = NatsReceiver("cfg", nats_url)

    def one(msg: NatsMessage) -> None:
        return None

    with pytest.raises(DBOSConfigurationError, match=r"'cfg'.*one.*durable='a\.b'"):
        receiver.consumer(stream="S", durable="a.b")(one)
    with pytest.raises(DBOSConfigurationError, match=r"batch=0"):
        receiver.consumer(stream="S", durable="d", batch=0)(one)
    with pytest.raises(DBOSConfigurationError, match=r"ack_wait=0"):
        receiver.consumer(stream="S", durable="d", ack_wait=0)(one)
    with pytest.raises(DBOSConfigurationError, match=r"exactly one positional argument"):
        receiver.consumer(stream="S", durable="d")(lambda a, b: None)
    with pytest.raises(DBOSConfigurationError, match=r"NatsReceiver\(name='a b'\)"):
        NatsReceiver("a b", nats_url)

    receiver.consumer(stream="S", durable="d")(one)
    with pytest.raises(DBOSRegistrationError, match=r"durable consumer 'd' of stream 'S'"):

        def two(msg: NatsMessage) -> None:
            return None

        receiver.consumer(stream="S", durable="d")(two)


def test_registering_a_consumer_after_launch_is_an_error(
    nats_url: str, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = NatsReceiver("late", nats_url)
    DBOS.launch()

    def late(msg: NatsMessage) -> None:
        return None

    with pytest.raises(DBOSRegistrationError, match=r"after DBOS\.launch"):
        receiver.consumer(stream="S", durable="d")(late)
    with pytest.raises(DBOSRegistrationError, match=r"after DBOS\.launch"):
        NatsReceiver("later", nats_url)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_redelivery_after_sigkill_between_start_and_ack_starts_nothing_new(
    nats_stream: Stream, make_config: ConfigFactory, spawn: Spawner
) -> None:
    config = make_config()
    subject = f"{nats_stream.subject}.crash"
    seqs = nats_publish(nats_stream.url, subject, [b"one", b"two", b"three"])
    args = {
        "url": nats_stream.url,
        "stream": nats_stream.name,
        "subject": subject,
        "sysdb": config.system_database_url,
        "schema": config.postgres_schema,
    }
    expected = _ids("crash", nats_stream, "crash", seqs)

    first = spawn("nats_crash", {**args, "mode": "die_at_ack"}, "first")
    first.expect("dying")
    killed_seq = next(int(x.split()[1]) for x in first.seen if x.startswith("dying-at-ack"))
    assert first.wait_exit() == -9  # SIGKILLed by its own first ack

    # The workflow of the message whose ack killed the process was durably started.
    DBOS(make_config(executor_id="inspector"))  # another executor: recovers nothing
    DBOS.launch()
    started = {s.workflow_id: s for s in DBOS.list_workflows(name="nats_crash.handle")}
    (killed_id,) = _ids("crash", nats_stream, "crash", [killed_seq])
    assert killed_id in started
    assert set(started) <= expected
    DBOS.shutdown()

    second = spawn("nats_crash", {**args, "mode": "drain", "expect": len(seqs)}, "second")
    second.expect("done", timeout=40)
    assert second.wait_exit() == 0
    acks = dict(
        (int(line.split()[1]), int(line.split("delivered=")[1]))
        for line in second.seen
        if line.startswith("acked ")
    )
    assert set(acks) == set(seqs)
    assert acks[killed_seq] >= 2  # it really was a redelivery

    DBOS(make_config(executor_id="inspector"))
    DBOS.launch()
    final = DBOS.list_workflows(name="nats_crash.handle")
    assert len(final) == len(seqs)
    assert {s.workflow_id for s in final} == expected
    assert all(s.status == "SUCCESS" for s in final)
    assert sorted(s.output for s in final) == ["one", "three", "two"]
    # The row written before the crash is the one that finished: it was not replaced.
    by_id = {s.workflow_id: s for s in final}
    assert by_id[killed_id].created_at == started[killed_id].created_at


def test_workflow_ids_follow_the_documented_shapes() -> None:
    common = {"receiver": "r", "stream": "S", "durable": "d", "sequence": 7}
    assert workflow_id_for(**common, stream_epoch=123, msg_id="m", id_from="stream_seq") == (
        "r-S-123-d-7"
    )
    assert workflow_id_for(**common, stream_epoch=123, msg_id="m", id_from="msg_id") == (
        "r-S-d-id-m"
    )
    assert workflow_id_for(**common, stream_epoch=None, msg_id=None, id_from="msg_id") == (
        "r-S-d-7"
    )
