"""The RabbitMQ receiver against a real broker: one workflow per message.

The crash test SIGKILLs a real child process between the durable workflow start and the
acknowledgement; every other test runs the receiver in this process.
"""

import time
from collections.abc import Generator
from pathlib import Path

import pytest

from _brokers import (
    AmqpQueue,
    finished_workflows,
    forget_receivers,
    rabbitmq_publish,
    rabbitmq_publish_without_message_id,
    rabbitmq_queue,
    rabbitmq_queue_depth,
    rabbitmq_queues,
    rabbitmq_url,
    unused_port,
    wait_until,
)
from children.harness import Spawner
from conftest import ConfigFactory
from dbos_rabbitmq_receive import (
    MissingMessageId,
    RabbitMQMessage,
    RabbitMQReceiver,
    workflow_id_for,
)
from dbos_sdk import DBOS, DBOSLaunchError
from dbos_sdk.errors import DBOSConfigurationError, DBOSRegistrationError

__all__ = ["forget_receivers", "rabbitmq_queue", "rabbitmq_url"]  # fixtures, used by name

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


def _all_settled(*queues: AmqpQueue) -> None:
    """Shut DBOS down, then check that no message is left in ``queues``: closing the
    connection requeues every unacknowledged message, so none were left unsettled."""
    DBOS.shutdown()
    time.sleep(0.2)
    for queue in queues:
        assert rabbitmq_queue_depth(queue.url, queue.name) == 0, queue.name


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_each_message_starts_one_workflow_with_an_id_from_its_message_id(
    rabbitmq_queue: AmqpQueue, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = RabbitMQReceiver("orders", rabbitmq_queue.url)
    q = rabbitmq_queue.name

    @receiver.consumer(queue=q)
    @DBOS.workflow(name="rmq.orders")
    def on_order(msg: RabbitMQMessage) -> str:
        return f"{msg.routing_key}|{msg.text()}|{msg.headers.get('k')}|{DBOS.workflow_id}"

    rabbitmq_publish(rabbitmq_queue.url, q, [b"a", b"b", b"c"], ["m1", "m2", "m3"], {"k": "v"})
    DBOS.launch()
    # m2 again: a publisher retry, a second message with the same message_id.
    rabbitmq_publish(rabbitmq_queue.url, q, [b"d", b"b", b"e"], ["m4", "m2", "m5"], {"k": "v"})
    done = finished_workflows("rmq.orders", 5)
    assert {s.workflow_id for s in done} == {f"orders-{q}-m{i}" for i in range(1, 6)}
    assert {s.output for s in done} == {
        f"{q}|{data}|v|orders-{q}-m{i}" for i, data in enumerate("abcde", start=1)
    }
    time.sleep(0.3)
    assert len(DBOS.list_workflows(name="rmq.orders")) == 5
    _all_settled(rabbitmq_queue)  # all six messages were acknowledged


def _rejections(caplog: pytest.LogCaptureFixture, count: int) -> None:
    def seen() -> int:
        return sum("without requeue" in r.getMessage() for r in caplog.records)

    wait_until(lambda: seen() >= count, f"{count} rejections")


def test_messages_without_message_id_follow_the_missing_message_id_policy(
    rabbitmq_url: str, make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with rabbitmq_queues(rabbitmq_url, 3) as (reject_q, hash_q, random_q):
        DBOS(make_config())
        receiver = RabbitMQReceiver("noid", rabbitmq_url)

        @receiver.consumer(queue=reject_q.name, missing_message_id="reject")
        @DBOS.workflow(name="rmq.noid.reject")
        def rejected(msg: RabbitMQMessage) -> bytes:
            return msg.body

        @receiver.consumer(queue=hash_q.name, missing_message_id="body_hash", payload="text")
        @DBOS.workflow(name="rmq.noid.hash")
        def hashed(text: str) -> str:
            return text

        @receiver.consumer(queue=random_q.name, payload="text")  # "random" is the default
        @DBOS.workflow(name="rmq.noid.random")
        def randomized(text: str) -> str:
            return text

        for queue in (reject_q, hash_q, random_q):
            rabbitmq_publish_without_message_id(rabbitmq_url, queue.name, [b"same", b"same"])
        DBOS.launch()
        hashed_done = finished_workflows("rmq.noid.hash", 1)
        random_done = finished_workflows("rmq.noid.random", 2)
        _rejections(caplog, 2)
        # reject: nothing started, and the messages are gone (dead-lettered if configured).
        assert DBOS.list_workflows(name="rmq.noid.reject") == []
        # body_hash: equal bodies are one event (as a redelivery of one message would be).
        assert hashed_done[0].workflow_id.startswith(f"noid-{hash_q.name}-sha256-")
        assert len(DBOS.list_workflows(name="rmq.noid.hash")) == 1
        # random: one workflow per delivery, so a redelivery would start another one.
        assert all(s.workflow_id.startswith(f"noid-{random_q.name}-random-") for s in random_done)
        _all_settled(reject_q, hash_q, random_q)  # the rejected ones are not requeued


def test_payload_modes_give_bytes_text_or_json_to_sync_and_async_workflows(
    rabbitmq_url: str, make_config: ConfigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with rabbitmq_queues(rabbitmq_url, 3) as (bq, tq, jq):
        DBOS(make_config())
        receiver = RabbitMQReceiver("modes", rabbitmq_url)

        @receiver.consumer(queue=bq.name, payload="bytes")
        @DBOS.workflow(name="rmq.bytes")
        async def on_bytes(data: bytes) -> int:
            return len(data)

        @receiver.consumer(queue=tq.name, payload="text")
        @DBOS.workflow(name="rmq.text")
        def on_text(text: str) -> str:
            return text.upper()

        @receiver.consumer(queue=jq.name, payload="json", prefetch=1)
        @DBOS.workflow(name="rmq.json")
        async def on_json(doc: dict[str, int]) -> int:
            return doc["n"] * 2

        rabbitmq_publish(rabbitmq_url, bq.name, [b"\x00\xff\x10"])
        rabbitmq_publish(rabbitmq_url, tq.name, ["héllo".encode()])
        rabbitmq_publish(rabbitmq_url, jq.name, [b'{"n": 21}', b"not json"])
        DBOS.launch()
        assert [w.output for w in finished_workflows("rmq.bytes", 1)] == [3]
        assert [w.output for w in finished_workflows("rmq.text", 1)] == ["HÉLLO"]
        assert [w.output for w in finished_workflows("rmq.json", 1)] == [42]
        _rejections(caplog, 1)
        assert len(DBOS.list_workflows(name="rmq.json")) == 1
        _all_settled(bq, tq, jq)  # the undecodable message was rejected, not requeued


def test_the_receiver_connects_at_launch_and_stops_consuming_at_shutdown(
    rabbitmq_queue: AmqpQueue, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = RabbitMQReceiver("life", rabbitmq_queue.url)

    @receiver.consumer(queue=rabbitmq_queue.name)
    @DBOS.workflow(name="rmq.life")
    def on_event(msg: RabbitMQMessage) -> bytes:
        return msg.body

    DBOS.launch()
    rabbitmq_publish(rabbitmq_queue.url, rabbitmq_queue.name, [b"1"])
    finished_workflows("rmq.life", 1)
    DBOS.shutdown()

    rabbitmq_publish(rabbitmq_queue.url, rabbitmq_queue.name, [b"2"])
    time.sleep(0.3)
    assert rabbitmq_queue_depth(rabbitmq_queue.url, rabbitmq_queue.name) == 1  # nobody consumes

    DBOS.launch()  # the same registrations, a new runtime: the receiver connects again
    assert sorted(w.output for w in finished_workflows("rmq.life", 2)) == [b"1", b"2"]


def test_an_unknown_queue_fails_launch_naming_receiver_function_and_url(
    rabbitmq_url: str, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = RabbitMQReceiver("noqueue", rabbitmq_url)

    @receiver.consumer(queue="no-such-queue-x")
    @DBOS.workflow(name="rmq.noqueue")
    def on_msg(msg: RabbitMQMessage) -> None:
        return None

    with pytest.raises(DBOSLaunchError) as err:
        DBOS.launch()
    text = str(err.value)
    shown_url = rabbitmq_url.replace(":guest@", ":***@")
    for part in ("'noqueue'", "'rmq.noqueue'", shown_url, "'no-such-queue-x'", "does not exist"):
        assert part in text, (part, text)


def test_an_unreachable_server_fails_launch_naming_receiver_function_and_url(
    make_config: ConfigFactory,
) -> None:
    DBOS(make_config())
    url = f"amqp://guest:secret@127.0.0.1:{unused_port()}/"
    receiver = RabbitMQReceiver("down", url, connect_timeout=1.0)

    @receiver.consumer(queue="any")
    @DBOS.workflow(name="rmq.down")
    def on_msg(msg: RabbitMQMessage) -> None:
        return None

    started = time.monotonic()
    with pytest.raises(DBOSLaunchError) as err:
        DBOS.launch()
    assert time.monotonic() - started < 5
    text = str(err.value)
    assert "secret" not in text
    for part in ("'down'", "'rmq.down'", url.replace(":secret@", ":***@"), "cannot connect"):
        assert part in text, (part, text)


def test_a_consumer_on_a_function_that_is_not_a_workflow_fails_launch(
    rabbitmq_queue: AmqpQueue, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = RabbitMQReceiver("plain", rabbitmq_queue.url)

    @receiver.consumer(queue=rabbitmq_queue.name)
    def not_a_workflow(msg: RabbitMQMessage) -> None:
        return None

    with pytest.raises(DBOSLaunchError, match=r"not_a_workflow.*not a DBOS workflow"):
        DBOS.launch()


def test_bad_consumer_settings_are_rejected_where_they_enter(rabbitmq_url: str) -> None:
    receiver = RabbitMQReceiver("cfg", rabbitmq_url)

    def one(msg: RabbitMQMessage) -> None:
        return None

    with pytest.raises(DBOSConfigurationError, match=r"'cfg'.*one.*prefetch=0"):
        receiver.consumer(queue="q", prefetch=0)(one)
    with pytest.raises(DBOSConfigurationError, match=r"queue='amq\.x'"):
        receiver.consumer(queue="amq.x")(one)
    with pytest.raises(DBOSConfigurationError, match=r"exactly one positional argument"):
        receiver.consumer(queue="q")(lambda a, b: None)
    with pytest.raises(DBOSConfigurationError, match=r"give an AMQP URL"):
        RabbitMQReceiver("x", "http://127.0.0.1/")

    receiver.consumer(queue="q")(one)

    def two(msg: RabbitMQMessage) -> None:
        return None

    with pytest.raises(DBOSRegistrationError, match=r"queue 'q' is bound to"):
        receiver.consumer(queue="q")(two)


def test_registering_a_consumer_after_launch_is_an_error(
    rabbitmq_url: str, make_config: ConfigFactory
) -> None:
    DBOS(make_config())
    receiver = RabbitMQReceiver("late", rabbitmq_url)
    DBOS.launch()

    def late(msg: RabbitMQMessage) -> None:
        return None

    with pytest.raises(DBOSRegistrationError, match=r"after DBOS\.launch"):
        receiver.consumer(queue="q")(late)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"], indirect=True)
def test_a_redelivery_after_sigkill_between_start_and_ack_starts_nothing_new(
    rabbitmq_queue: AmqpQueue, make_config: ConfigFactory, spawn: Spawner
) -> None:
    config = make_config()
    ids = ["r1", "r2", "r3"]
    rabbitmq_publish(rabbitmq_queue.url, rabbitmq_queue.name, [b"one", b"two", b"three"], ids)
    args = {
        "url": rabbitmq_queue.url,
        "queue": rabbitmq_queue.name,
        "sysdb": config.system_database_url,
        "schema": config.postgres_schema,
    }
    expected = {f"crash-{rabbitmq_queue.name}-{i}" for i in ids}

    first = spawn("rmq_crash", {**args, "mode": "die_at_ack"}, "first")
    first.expect("dying")
    killed = next(x.split()[1] for x in first.seen if x.startswith("dying-at-ack"))
    assert first.wait_exit() == -9  # SIGKILLed by its own first ack

    # The workflow of the message whose ack killed the process was durably started.
    DBOS(make_config(executor_id="inspector"))  # another executor: recovers nothing
    DBOS.launch()
    started = {s.workflow_id: s for s in DBOS.list_workflows(name="rmq_crash.handle")}
    killed_id = f"crash-{rabbitmq_queue.name}-{killed}"
    assert killed_id in started
    assert set(started) <= expected
    DBOS.shutdown()

    second = spawn("rmq_crash", {**args, "mode": "drain", "expect": len(ids)}, "second")
    second.expect("done", timeout=40)
    assert second.wait_exit() == 0
    acks = dict(
        (line.split()[1], line.split("redelivered=")[1])
        for line in second.seen
        if line.startswith("acked ")
    )
    assert set(acks) == set(ids)
    assert acks[killed] == "1"  # it really was a redelivery

    DBOS(make_config(executor_id="inspector"))
    DBOS.launch()
    final = DBOS.list_workflows(name="rmq_crash.handle")
    assert {s.workflow_id for s in final} == expected
    assert len(final) == len(ids)
    assert all(s.status == "SUCCESS" for s in final)
    assert sorted(s.output for s in final) == ["one", "three", "two"]
    # The row written before the crash is the one that finished: it was not replaced.
    by_id = {s.workflow_id: s for s in final}
    assert by_id[killed_id].created_at == started[killed_id].created_at


def test_workflow_ids_follow_the_documented_shapes() -> None:
    def wid(message_id: str | None, policy: MissingMessageId) -> str | None:
        return workflow_id_for(
            receiver="r", queue="q", message_id=message_id, body=b"x", missing_message_id=policy
        )

    assert wid("m-1", "reject") == "r-q-m-1"
    assert wid(None, "reject") is None
    assert wid("", "reject") is None  # an empty message_id is no identity either
    assert wid(None, "body_hash") == wid(None, "body_hash")
    assert str(wid(None, "body_hash")).startswith("r-q-sha256-")
    assert wid(None, "random") != wid(None, "random")
