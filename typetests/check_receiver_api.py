"""Typetests: the event-receiver API.

A receiver's ``ReceiverRegistry[ClassInfo, MethodInfo, ParamInfo]`` carries its own info
types through every association function and through ``get_associated_info``; untyped
keys get ``dict`` infos. ``StartWorkflowOptions`` is a closed, frozen set of options;
``DBOSExternalState`` is frozen; a ``DBOSLifecycleCallback`` with a wrong member
signature is rejected (subclass or structural). Checked, never run.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any, assert_type

import attrs

from dbos_sdk import (
    DBOS,
    DBOSExternalState,
    DBOSLifecycleCallback,
    ExternalRegistration,
    MethodRegistration,
    ParamInfo,
    ReceiverRegistry,
    StartWorkflowOptions,
    WorkflowHandle,
    WorkflowHandleAsync,
)
from dbos_sdk import receiver as rcv


@attrs.define
class TopicClass:
    prefix: str = ""


@attrs.define
class TopicMethod:
    topic: str = ""
    max_batch: int = 1


@attrs.define
class TopicParam:
    header: str = ""


@attrs.define
class OtherMethod:
    url: str = ""


registry = ReceiverRegistry(
    "topics", class_info=TopicClass, method_info=TopicMethod, param_info=TopicParam
)
assert_type(registry, ReceiverRegistry[TopicClass, TopicMethod, TopicParam])


class Orders:
    @staticmethod
    @DBOS.workflow()
    def on_order(order_id: str, body: bytes) -> str:
        return order_id


# --- associate_* return the registry's info types -------------------------------------------

assert_type(DBOS.associate_class_with_info(registry, Orders), TopicClass)
assert_type(DBOS.associate_function_with_info(registry, Orders.on_order), TopicMethod)
assert_type(
    DBOS.associate_param_with_info(registry, Orders.on_order, param="body"), TopicParam | None
)
assert_type(rcv.associate_function_with_info(registry, Orders.on_order), TopicMethod)
DBOS.associate_function_with_info(registry, Orders.on_order).topic = "orders"
DBOS.associate_function_with_info(registry, Orders.on_order).topic = 3  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
_ = DBOS.associate_function_with_info(registry, Orders.on_order).url  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownVariableType]
wrong_info: OtherMethod = DBOS.associate_function_with_info(registry, Orders.on_order)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
DBOS.associate_param_with_info(registry, Orders.on_order, param=1.5)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]


# --- get_associated_info keeps them ---------------------------------------------------------

found = DBOS.get_associated_info(registry)
assert_type(found, Sequence[ExternalRegistration[TopicClass, TopicMethod, TopicParam]])
assert_type(
    rcv.get_associated_info(registry, cls=Orders, func_name="on_order"),
    Sequence[ExternalRegistration[TopicClass, TopicMethod, TopicParam]],
)
first = found[0]
assert_type(first.method_config, TopicMethod)
assert_type(first.method_config.max_batch, int)
assert_type(first.class_config, TopicClass | None)
assert_type(first.param_config, Sequence[ParamInfo[TopicParam]])
assert_type(first.param_config[0].param_config, TopicParam)
assert_type(first.param_config[0].index, int)
assert_type(first.method_reg, MethodRegistration)
assert_type(first.method_reg.invoke("id", b""), Any)
wrong_method: OtherMethod = first.method_config  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
first.method_config = TopicMethod()  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]

# Untyped keys (a name, a class, a receiver instance) get dict infos.
assert_type(DBOS.associate_function_with_info("name", Orders.on_order), dict[str, Any])
assert_type(
    DBOS.get_associated_info(Orders),
    Sequence[ExternalRegistration[dict[str, Any], dict[str, Any], dict[str, Any]]],
)
DBOS.get_associated_info(42)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]


# --- registered workflows and starting them ------------------------------------------------

workflows = DBOS.get_registered_workflows()
assert_type(workflows, Sequence[MethodRegistration])
start_opts = StartWorkflowOptions(
    workflow_id="event-1",
    queue_name="q",
    timeout=5.0,
    deadline=datetime.now(),
    authenticated_user="u",
    authenticated_roles=["admin"],
)
assert_type(
    DBOS.start_workflow_registered(workflows[0], ("id", b""), {}, start_opts),
    WorkflowHandle[Any],
)
StartWorkflowOptions(priority=1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
StartWorkflowOptions("event-1")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
StartWorkflowOptions(timeout="5s")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
start_opts.workflow_id = "other"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]


async def start_async() -> None:
    handle = await DBOS.start_workflow_registered_async(workflows[0], (), {}, start_opts)
    assert_type(handle, WorkflowHandleAsync[Any])


# --- dispatch state --------------------------------------------------------------------------

state = DBOSExternalState(service="s", workflow_fn_name="f", key="k", value="v", update_seq=3)
assert_type(DBOS.upsert_event_dispatch_state(state), DBOSExternalState)
assert_type(DBOS.get_event_dispatch_state("s", "f", "k"), DBOSExternalState | None)
assert_type(state.update_time, float | None)
state.value = "changed"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
DBOSExternalState(service="s", workflow_fn_name="f", key="k", update_seq="3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
DBOSExternalState("s", "f", "k")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


# --- authentication ----------------------------------------------------------------------------

assert_type(DBOS.with_authed_context("u", ["r"], lambda: 3), int)
assert_type(DBOS.authenticated_user, str | None)
assert_type(DBOS.authenticated_roles, tuple[str, ...] | None)
assert_type(DBOS.assumed_role, str | None)


async def authed_async() -> None:
    async def call() -> str:
        return "x"

    assert_type(await DBOS.with_authed_context_async("u", ["r"], call), str)


# --- lifecycle callbacks -----------------------------------------------------------------------


class SyncReceiver(DBOSLifecycleCallback):
    def initialize(self) -> None:
        pass


class AsyncReceiver(DBOSLifecycleCallback):
    async def initialize(self) -> None:
        pass

    async def destroy(self) -> None:
        pass


class Structural:
    """Conforms without subclassing."""

    def initialize(self) -> None:
        pass

    def destroy(self) -> None:
        pass

    def log_registered_endpoints(self) -> None:
        pass


class WrongInitialize(DBOSLifecycleCallback):
    def initialize(self, timeout: float) -> None:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        pass


class WrongEndpoints(DBOSLifecycleCallback):
    def log_registered_endpoints(self) -> list[str]:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        return []


class StructuralWrongDestroy:
    def initialize(self) -> None:
        pass

    def destroy(self, force: bool) -> None:
        pass

    def log_registered_endpoints(self) -> None:
        pass


class StructuralMissingMember:
    def initialize(self) -> None:
        pass


DBOS.register_lifecycle_callback(SyncReceiver())
DBOS.register_lifecycle_callback(AsyncReceiver())
DBOS.register_lifecycle_callback(Structural())
rcv.register_lifecycle_callback(Structural())
DBOS.register_lifecycle_callback(StructuralWrongDestroy())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
DBOS.register_lifecycle_callback(StructuralMissingMember())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
