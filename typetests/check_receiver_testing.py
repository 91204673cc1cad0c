"""Typetests: the receiver conformance suite's contract (dbos_sdk.testing).

An ``Association`` keeps the receiver registry's own info types, so ``matches`` is checked
against the method info; a kit must answer every capability (the abstract methods) with
``Supported`` or ``NotSupported``, or it cannot be instantiated; a ``Binding`` must say
where the dispatch state is or why there is none; records are keyword-built and frozen.
Checked, never run.
"""

from collections.abc import Mapping, Sequence
from typing import Any, assert_type

from dbos_sdk import ReceiverRegistry
from dbos_sdk.scheduler import SCHEDULES, SERVICE, STATE_KEY, ScheduleInfo
from dbos_sdk.testing import (
    Association,
    Binding,
    Delivery,
    DispatchStateRef,
    KitScratch,
    Misconfiguration,
    NotSupported,
    ReceiverConformance,
    ReceiverKit,
    ReceiverKitFactory,
    Supported,
    TargetWorkflow,
)


class TopicInfo:
    topic: str = ""


TOPICS = ReceiverRegistry(
    "topics", class_info=lambda: None, method_info=TopicInfo, param_info=lambda: None
)

# --- associations keep the receiver's info types ------------------------------------------

by_cron = Association(registry=SCHEDULES, matches=lambda info: info.cron == "* * * * *")
assert_type(by_cron, Association[None, ScheduleInfo, None])
by_topic = Association(registry=TOPICS, matches=lambda info: info.topic == "orders")
assert_type(by_topic, Association[None, TopicInfo, None])


def is_orders(info: TopicInfo) -> bool:
    return info.topic == "orders"


def is_nightly(info: ScheduleInfo) -> bool:
    return info.cron == "0 3 * * *"


Association(registry=SCHEDULES, matches=is_nightly)
Association(registry=SCHEDULES, matches=is_orders)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
Association(SCHEDULES, is_nightly)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]

# --- a binding says where the dispatch state is, or why there is none ----------------------

state = DispatchStateRef(service=SERVICE, workflow_fn_name="nightly", key=STATE_KEY)
with_state = Binding(association=by_cron, dispatch_state=state)
assert_type(with_state, Binding[None, ScheduleInfo, None])
Binding(association=by_topic, dispatch_state=NotSupported(reason="the broker keeps it"))
Binding(association=by_topic)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Binding(association=by_topic, dispatch_state=None)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
with_state.dispatch_state = state  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]

# --- records --------------------------------------------------------------------------------

delivery = Delivery(key="k1", workflow_id="topics-k1")
assert_type(delivery.workflow_id, str)
Delivery(key="k1")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Delivery("k1", "topics-k1")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Misconfiguration(mentions=["stream='NOPE'"])


def bound(target: TargetWorkflow) -> str:
    assert_type(target.name, str)
    return target.func("event")  # the workflow returns the event's key


# --- a kit answers every capability ------------------------------------------------------------


class TopicKit(ReceiverKit):
    def unreachable(self) -> str | None:
        return None

    def bind(self, target: TargetWorkflow) -> Binding[None, TopicInfo, None]:
        return Binding(association=by_topic, dispatch_state=NotSupported(reason="none kept"))

    def deliver(self, key: str) -> Delivery:
        return Delivery(key=key, workflow_id=f"topics-{key}")

    def event_key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        return str(args[0])

    def redelivery(self) -> Supported | NotSupported:
        return Supported()

    def redeliver(self, delivery: Delivery) -> None:
        self.deliver(delivery.key)

    def delivery_while_down(self) -> Supported | NotSupported:
        return Supported()

    def crash_restart(self) -> Supported | NotSupported:
        return NotSupported(reason="the broker cannot be shared with a child process")

    def bind_misconfigured(self, target: TargetWorkflow) -> Misconfiguration | NotSupported:
        return Misconfiguration(mentions=["topic='nope'"])


factory: ReceiverKitFactory = TopicKit
kit = TopicKit(KitScratch(directory="/tmp/check", token="k1"))
assert_type(kit.deliver("a"), Delivery)


class Undeclared(ReceiverKit):
    """Leaves the capabilities unanswered: not instantiable."""

    def unreachable(self) -> str | None:
        return None

    def bind(self, target: TargetWorkflow) -> Binding[None, TopicInfo, None]:
        return Binding(association=by_topic, dispatch_state=NotSupported(reason="none kept"))

    def deliver(self, key: str) -> Delivery:
        return Delivery(key=key, workflow_id=key)

    def event_key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        return str(args[0])


Undeclared(KitScratch(directory="/tmp/check", token="k2"))  # type: ignore[abstract]  # pyright: ignore[reportAbstractUsage]


class YesNoKit(TopicKit):
    def redelivery(self) -> bool:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        return True


# --- a test class names its kit factory ---------------------------------------------------------


class TestTopics(ReceiverConformance):
    kit_factory = "typetests.check_receiver_testing:TopicKit"


class TestByObject(ReceiverConformance):
    kit_factory = TopicKit  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
