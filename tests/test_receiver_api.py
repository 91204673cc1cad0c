"""The event-receiver API: lifecycle callbacks, associations, registered workflows and
starting them with StartWorkflowOptions (on SQLite and Postgres where a database is used).
"""

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from dbos_sdk import (
    DBOS,
    DBOSConfiguredInstance,
    DBOSError,
    DBOSLaunchError,
    DBOSLifecycleCallback,
    DBOSNotLaunchedError,
    DBOSRegistrationError,
    DBOSWorkflowCancelledError,
    ExternalRegistration,
    MethodRegistration,
    ParamInfo,
    Queue,
    ReceiverRegistry,
    SetWorkflowID,
    StartWorkflowOptions,
)
from dbos_sdk import receiver as receiver_api


def _set_pending(workflow_id: str) -> None:
    """Make a finished workflow look interrupted, so the next launch recovers it."""
    from dbos_sdk._runtime import current_runtime

    rt = current_runtime()
    assert rt is not None
    with rt.sysdb._cursor() as ex:  # pyright: ignore[reportPrivateUsage]
        ex(
            f"UPDATE {rt.sysdb._ws} SET status = 'PENDING' WHERE workflow_uuid = ?",  # pyright: ignore[reportPrivateUsage]
            (workflow_id,),
        )


# --- lifecycle ----------------------------------------------------------------------------


def test_launch_order_is_sysdb_datasources_recovery_then_initialize_then_endpoints(
    dbos: DBOS,
) -> None:
    from dbos_sdk._registry import REGISTRY, PluginHook

    events: list[str] = []

    @DBOS.step()
    def step_once() -> int:
        events.append("step ran")
        return 7

    @DBOS.workflow()
    def recovered() -> int:
        events.append("workflow ran")
        return step_once()

    DBOS.launch()
    with_id = "to-recover"
    with SetWorkflowID(with_id):
        assert recovered() == 7
    _set_pending(with_id)
    DBOS.shutdown()
    events.clear()

    REGISTRY.datasources.append(
        PluginHook("ds", lambda: events.append("datasource start"), lambda: None)
    )

    class Recorder(DBOSLifecycleCallback):
        def __init__(self, label: str) -> None:
            self.label = label

        def initialize(self) -> None:
            status = DBOS.get_workflow_status(with_id)  # the system database is open
            assert status is not None and status.recovery_attempts >= 1  # recovery began
            # ... and workflows run: the recovered one finishes while we wait for it.
            assert DBOS.retrieve_workflow(with_id).get_result(timeout=10) == 7
            events.append(f"{self.label} initialize")

        def log_registered_endpoints(self) -> None:
            events.append(f"{self.label} endpoints")

    DBOS.register_lifecycle_callback(Recorder("A"))
    DBOS.register_lifecycle_callback(Recorder("B"))
    DBOS.launch()
    assert events == [
        "datasource start",
        "workflow ran",  # recovery re-ran the workflow; its step was replayed
        "A initialize",
        "B initialize",
        "A endpoints",
        "B endpoints",
    ]


def test_destroy_runs_before_workflow_processing_stops(dbos: DBOS) -> None:
    queue = Queue("destroy-q")
    results: list[Any] = []

    @DBOS.workflow()
    def double(x: int) -> int:
        return 2 * x

    class WorksAtShutdown(DBOSLifecycleCallback):
        def destroy(self) -> None:
            results.append(double(1))  # called directly
            results.append(DBOS.start_workflow(double, 2).get_result(timeout=10))
            results.append(queue.enqueue(double, 3).get_result(timeout=10))  # queues still run

    DBOS.register_lifecycle_callback(WorksAtShutdown())
    DBOS.launch()
    DBOS.shutdown()
    assert results == [2, 4, 6]


def test_destroy_order_is_reverse_and_an_error_in_destroy_is_logged(
    dbos: DBOS, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[str] = []

    class Good(DBOSLifecycleCallback):
        def destroy(self) -> None:
            events.append("good destroyed")

    class Broken(DBOSLifecycleCallback):
        def destroy(self) -> None:
            events.append("broken destroy")
            raise RuntimeError("cannot close")

    DBOS.register_lifecycle_callback(Good())
    DBOS.register_lifecycle_callback(Broken())
    DBOS.launch()
    with caplog.at_level(logging.ERROR, logger="dbos_sdk"):
        DBOS.shutdown()
    assert events == ["broken destroy", "good destroyed"]
    assert "Broken" in caplog.text and "cannot close" in caplog.text
    with pytest.raises(DBOSNotLaunchedError):
        DBOS.list_workflows()


def test_an_exception_in_initialize_fails_launch_naming_the_receiver(dbos: DBOS) -> None:
    events: list[str] = []

    class First(DBOSLifecycleCallback):
        def initialize(self) -> None:
            events.append("first initialize")

        def destroy(self) -> None:
            events.append("first destroy")

    class BadBroker(DBOSLifecycleCallback):
        def initialize(self) -> None:
            raise ConnectionRefusedError("broker at localhost:1 is down")

        def destroy(self) -> None:
            events.append("bad destroy")

    DBOS.register_lifecycle_callback(First())
    DBOS.register_lifecycle_callback(BadBroker())
    with pytest.raises(DBOSLaunchError, match=r"BadBroker.*broker at localhost:1 is down"):
        DBOS.launch()
    # What started was stopped again; the one that failed is not destroyed.
    assert events == ["first initialize", "first destroy"]
    with pytest.raises(DBOSNotLaunchedError):
        DBOS.list_workflows()


def test_async_initialize_and_destroy_are_awaited(dbos: DBOS) -> None:
    events: list[str] = []

    @DBOS.workflow()
    async def async_echo(x: str) -> str:
        await asyncio.sleep(0)
        return x

    class AsyncReceiver(DBOSLifecycleCallback):
        async def initialize(self) -> None:
            await asyncio.sleep(0.01)
            handle = await DBOS.start_workflow_async(async_echo, "from initialize")
            events.append(await handle.get_result(timeout=10))

        async def destroy(self) -> None:
            await asyncio.sleep(0.01)
            events.append(await async_echo("from destroy"))

    DBOS.register_lifecycle_callback(AsyncReceiver())
    DBOS.launch()
    assert events == ["from initialize"]  # launch returned after initialize finished
    DBOS.shutdown()
    assert events == ["from initialize", "from destroy"]


def test_registering_after_launch_is_a_registration_error(dbos: DBOS) -> None:
    reg = ReceiverRegistry("late", class_info=dict, method_info=dict, param_info=dict)

    def handler(x: int) -> None:
        pass

    class Late(DBOSLifecycleCallback):
        pass

    DBOS.launch()
    with pytest.raises(DBOSRegistrationError, match=r"Late.*after DBOS\.launch"):
        DBOS.register_lifecycle_callback(Late())
    with pytest.raises(DBOSRegistrationError, match="handler"):
        DBOS.associate_function_with_info(reg, handler)
    with pytest.raises(DBOSRegistrationError, match="handler"):
        DBOS.associate_param_with_info(reg, handler, param="x")
    with pytest.raises(DBOSRegistrationError, match="Late"):
        DBOS.associate_class_with_info(reg, Late)


# --- associations -------------------------------------------------------------------------


@attrs.define
class TopicClass:
    prefix: str = ""


@attrs.define
class TopicMethod:
    topic: str = ""


@attrs.define
class TopicParam:
    header: str = ""


def _topic_registry() -> ReceiverRegistry[TopicClass, TopicMethod, TopicParam]:
    return ReceiverRegistry(
        "topics", class_info=TopicClass, method_info=TopicMethod, param_info=TopicParam
    )


def test_associations_round_trip_with_the_receivers_own_info_types() -> None:
    reg = _topic_registry()

    class Orders:
        @staticmethod
        @DBOS.workflow()
        def on_order(order_id: str, body: bytes) -> str:
            return order_id

        @staticmethod
        @DBOS.workflow()
        def on_refund(order_id: str) -> str:
            return order_id

    DBOS.associate_class_with_info(reg, Orders).prefix = "shop."
    DBOS.associate_function_with_info(reg, Orders.on_order).topic = "orders"
    DBOS.associate_function_with_info(reg, Orders.on_refund).topic = "refunds"
    by_index = DBOS.associate_param_with_info(reg, Orders.on_order, param=1)
    by_name = DBOS.associate_param_with_info(reg, Orders.on_order, param="order_id")
    assert by_index is not None and by_name is not None
    by_index.header = "x-body"
    by_name.header = "x-id"
    # The same objects come back on a second call (fill them in over several calls).
    assert DBOS.associate_param_with_info(reg, Orders.on_order, param="body") is by_index
    assert DBOS.associate_param_with_info(reg, Orders.on_order, param="nope") is None
    assert DBOS.associate_param_with_info(reg, Orders.on_order, param=2) is None
    assert DBOS.associate_param_with_info(reg, Orders.on_order, param=-1) is None

    found = DBOS.get_associated_info(reg)
    assert [type(r) for r in found] == [ExternalRegistration, ExternalRegistration]
    order = next(r for r in found if r.method_config.topic == "orders")
    assert order.class_config == TopicClass("shop.")
    assert [(p.name, p.index, p.param_config) for p in order.param_config] == [
        ("order_id", 0, TopicParam("x-id")),
        ("body", 1, TopicParam("x-body")),
    ]
    assert all(isinstance(p, ParamInfo) for p in order.param_config)
    mreg = order.method_reg
    assert isinstance(mreg, MethodRegistration)
    assert (mreg.kind, mreg.is_async, mreg.class_name) == ("workflow", False, Orders.__qualname__)
    assert mreg.name == Orders.on_order.__qualname__
    assert mreg.registered_function is Orders.on_order

    # Filters: by class (object or qualified name) and by function name.
    assert len(DBOS.get_associated_info(reg, cls=Orders)) == 2
    assert len(DBOS.get_associated_info(reg, cls=Orders.__qualname__)) == 2
    assert DBOS.get_associated_info(reg, cls="Elsewhere") == []
    refunds = DBOS.get_associated_info(reg, func_name="on_refund")
    assert [r.method_config.topic for r in refunds] == ["refunds"]
    assert refunds[0].param_config == []
    assert DBOS.get_associated_info(reg, cls=Orders, func_name="on_order")[0] == order
    assert DBOS.get_associated_info(reg, func_name="missing") == []
    # Another receiver's key sees none of it.
    assert DBOS.get_associated_info(_topic_registry()) == []


def test_association_is_the_same_before_and_after_the_dbos_decorator() -> None:
    reg = _topic_registry()

    def handle(event: str) -> str:
        return event.upper()

    DBOS.associate_function_with_info(reg, handle).topic = "early"  # before decorating
    handle_wf = DBOS.workflow()(handle)
    info = DBOS.associate_function_with_info(reg, handle_wf)  # after: the same object
    assert info.topic == "early"
    param = DBOS.associate_param_with_info(reg, handle_wf, param="event")
    assert param is DBOS.associate_param_with_info(reg, handle, param=0)

    # A receiver's own decorator may sit above or below @DBOS.workflow().
    def on_topic(topic: str) -> Any:
        def deco(func: Any) -> Any:
            DBOS.associate_function_with_info(reg, func).topic = topic
            return func

        return deco

    @on_topic("above")
    @DBOS.workflow()
    def above(event: str) -> str:
        return event

    @DBOS.workflow()
    @on_topic("below")
    def below(event: str) -> str:
        return event

    regs = {r.method_config.topic: r.method_reg for r in DBOS.get_associated_info(reg)}
    assert set(regs) == {"early", "above", "below"}
    assert regs["early"].registered_function is handle_wf
    assert regs["above"].registered_function is above
    assert regs["below"].registered_function is below
    assert all(m.kind == "workflow" for m in regs.values())
    # A name given at association is one more name to filter on.
    named = DBOS.associate_function_with_info(reg, lambda: None, name="custom-name")
    named.topic = "named"
    assert [
        r.method_config.topic for r in DBOS.get_associated_info(reg, func_name="custom-name")
    ] == ["named"]


def test_untyped_receiver_keys_get_dict_infos() -> None:
    class MyReceiver(DBOSLifecycleCallback):
        pass

    instance = MyReceiver()

    def on_event(x: int) -> None:
        pass

    for key in ("my-receiver-name", MyReceiver, instance):
        info = DBOS.associate_function_with_info(key, on_event)
        assert info == {}
        info["key"] = repr(key)
        param = DBOS.associate_param_with_info(key, on_event, param="x")
        assert param == {}
    for key in ("my-receiver-name", MyReceiver, instance):
        (found,) = DBOS.get_associated_info(key)
        assert found.method_config == {"key": repr(key)}
        assert found.method_reg.kind is None  # not a DBOS function
        assert found.method_reg.invoke(1) is None


def test_method_registration_invoke_runs_the_workflow_durably(dbos: DBOS) -> None:
    reg = _topic_registry()
    runs: list[str] = []

    @DBOS.workflow()
    def record(event: str) -> str:
        runs.append(event)
        return f"{event}@{DBOS.workflow_id}"

    DBOS.associate_function_with_info(reg, record).topic = "t"
    DBOS.launch()
    (found,) = DBOS.get_associated_info(reg)
    result = found.method_reg.invoke("e1")
    assert result.startswith("e1@") and runs == ["e1"]
    status = DBOS.get_workflow_status(result.split("@")[1])
    assert status is not None and status.status == "SUCCESS"


# --- registered workflows and instances ------------------------------------------------------


def test_registered_workflows_and_instances_run_for_a_named_instance(dbos: DBOS) -> None:
    class Greeter(DBOSConfiguredInstance):
        def __init__(self, config_name: str, greeting: str) -> None:
            self.greeting = greeting
            super().__init__(config_name)

        @DBOS.workflow()
        def greet(self, who: str) -> str:
            return f"{self.greeting} {who} ({self.config_name})"

    @DBOS.workflow()
    def free_standing() -> None:
        pass

    en = Greeter("en", "hello")
    fr = Greeter("fr", "bonjour")
    by_name = {m.name: m for m in DBOS.get_registered_workflows()}
    greet = by_name[Greeter.greet.__qualname__]
    assert greet.class_name == Greeter.__qualname__ and greet.kind == "workflow"
    assert by_name[free_standing.__qualname__].class_name is None
    instances = DBOS.get_registered_workflow_instances()[Greeter.__qualname__]
    assert dict(instances) == {"en": en, "fr": fr}

    DBOS.launch()
    assert greet.invoke(instances["fr"], "Ann") == "bonjour Ann (fr)"
    handle = DBOS.start_workflow_registered(
        greet, (instances["en"], "Bob"), {}, StartWorkflowOptions(workflow_id="greet-en")
    )
    assert handle.get_result(timeout=10) == "hello Bob (en)"
    status = handle.get_status()
    assert (status.class_name, status.config_name) == (Greeter.__qualname__, "en")
    # As a keyword argument too.
    kw = DBOS.start_workflow_registered(greet, (fr,), {"who": "Cy"}, StartWorkflowOptions())
    assert kw.get_result(timeout=10) == "bonjour Cy (fr)"


# --- start_workflow_registered ----------------------------------------------------------------


def test_start_workflow_registered_id_is_idempotent_and_queue_enqueues(dbos: DBOS) -> None:
    queue = Queue("registered-q")
    runs: list[int] = []

    @DBOS.workflow()
    def count(x: int) -> int:
        runs.append(x)
        return x

    (mreg,) = [m for m in DBOS.get_registered_workflows() if m.registered_function is count]
    DBOS.launch()
    opts = StartWorkflowOptions(workflow_id="event-42")
    first = DBOS.start_workflow_registered(mreg, (1,), {}, opts)
    second = DBOS.start_workflow_registered(mreg, (1,), {}, opts)
    assert first.workflow_id == second.workflow_id == "event-42"
    assert first.get_result(timeout=10) == second.get_result(timeout=10) == 1
    assert runs == [1]

    queued = DBOS.start_workflow_registered(
        mreg, (2,), {}, StartWorkflowOptions(workflow_id="queued-1", queue_name=queue.name)
    )
    assert queued.get_result(timeout=10) == 2
    assert queued.get_status().queue_name == "registered-q"

    async def via_async() -> int:
        h = await DBOS.start_workflow_registered_async(
            mreg, (3,), {}, StartWorkflowOptions(workflow_id="async-1")
        )
        return int(await h.get_result(timeout=10))

    assert asyncio.run(via_async()) == 3
    assert sorted(runs) == [1, 2, 3]


def test_start_workflow_registered_timeout_and_deadline_cancel(dbos: DBOS) -> None:
    @DBOS.step()
    def nap() -> None:
        time.sleep(0.1)

    @DBOS.workflow()
    def slow() -> None:
        for _ in range(50):
            nap()

    (mreg,) = [m for m in DBOS.get_registered_workflows() if m.registered_function is slow]
    DBOS.launch()
    timed = DBOS.start_workflow_registered(mreg, (), {}, StartWorkflowOptions(timeout=0.3))
    with pytest.raises(DBOSWorkflowCancelledError):
        timed.get_result(timeout=10)
    assert timed.get_status().timeout_ms == 300
    deadline = datetime.now(UTC) + timedelta(seconds=0.3)
    late = DBOS.start_workflow_registered(mreg, (), {}, StartWorkflowOptions(deadline=deadline))
    with pytest.raises(DBOSWorkflowCancelledError):
        late.get_result(timeout=10)
    status = late.get_status()
    assert status.status == "CANCELLED"
    assert status.deadline_epoch_ms == int(deadline.timestamp() * 1000)


def test_start_workflow_registered_records_the_authenticated_user(dbos: DBOS) -> None:
    seen: list[tuple[str | None, tuple[str, ...] | None]] = []

    @DBOS.required_roles(["operator"])
    @DBOS.workflow()
    def guarded() -> str:
        seen.append((DBOS.authenticated_user, DBOS.authenticated_roles))
        return str(DBOS.assumed_role)

    (mreg,) = [m for m in DBOS.get_registered_workflows() if m.registered_function is guarded]
    DBOS.launch()
    opts = StartWorkflowOptions(authenticated_user="webhook", authenticated_roles=["operator"])
    handle = DBOS.start_workflow_registered(mreg, (), {}, opts)
    assert handle.get_result(timeout=10) == "operator"
    assert seen == [("webhook", ("operator",))]
    status = handle.get_status()
    assert status.authenticated_user == "webhook"
    assert status.authenticated_roles == ["operator"]
    assert status.assumed_role == "operator"
    # The options apply to that one start only: nothing leaks into the caller's context.
    assert DBOS.authenticated_user is None


def test_start_workflow_options_reject_unknown_options() -> None:
    with pytest.raises(TypeError, match="priority"):
        StartWorkflowOptions(**{"priority": 1})  # a type error too: typetests/check_receiver_api.py
    with pytest.raises(TypeError):
        StartWorkflowOptions("positional-id")  # type: ignore[call-arg]
    opts = StartWorkflowOptions(workflow_id="x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        opts.workflow_id = "y"  # type: ignore[misc]


def test_the_receiver_module_reexports_the_statics_of_dbos() -> None:
    assert receiver_api.get_associated_info is DBOS.get_associated_info
    assert receiver_api.start_workflow_registered is DBOS.start_workflow_registered
    assert receiver_api.DBOSLaunchError is DBOSLaunchError
    assert issubclass(DBOSLaunchError, DBOSError)
