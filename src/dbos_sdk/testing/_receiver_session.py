"""Machinery of the receiver conformance suite: one DBOS session per check.

A session isolates the registry, registers the workflow receivers are bound to, launches
and shuts DBOS down, observes the workflow starts receivers make, records the lifecycle
calls of the receiver under test, and attributes workflows to the events that started
them.
"""

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar

from dbos_sdk import (
    DBOS,
    DBOSConfig,
    DBOSExternalState,
    DBOSLifecycleCallback,
    MethodRegistration,
    StartWorkflowOptions,
    WorkflowHandle,
    WorkflowHandleAsync,
    WorkflowStatus,
)
from dbos_sdk import receiver as receiver_api
from dbos_sdk._registry import REGISTRY, PluginHook
from dbos_sdk._registry_scope import isolated_registry
from dbos_sdk._sysdb import WorkflowRow, now_ms, open_system_database
from dbos_sdk.testing._ds_kit import KitScratch
from dbos_sdk.testing._receivers import (
    WORKFLOW_NAME,
    Binding,
    Delivery,
    DispatchStateRef,
    ReceiverKit,
    TargetWorkflow,
)

T = TypeVar("T")

PROBE_NAME = "receiver_conformance_probe"
PENDING_ID = "receiver-conformance-pending"
FINISHED = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")

StartHook = Callable[[str | None, Sequence[Any], Mapping[str, Any]], None]
"""Called with (workflow ID, args, kwargs) of a start a receiver makes."""


def check(condition: bool, message: str) -> None:
    """An assertion that survives ``python -O`` and carries its message."""
    if not condition:
        raise AssertionError(message)


def wait_until(done: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    end = time.monotonic() + timeout
    while not done():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s: {what()}")
        time.sleep(0.02)


def build_receiver_kit(path: str, scratch: KitScratch) -> ReceiverKit:
    """The kit that the factory named ``"module:attribute"`` builds on ``scratch``."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"kit_factory={path!r}: name the kit factory as 'module:attribute', e.g. "
            "'tests.my_kits:MyReceiverKit'."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"kit_factory={path!r}: cannot import {module_name!r} ({exc}); the module must be "
            "importable from the test process and, with its sys.path, from a child process."
        ) from exc
    factory: object = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"kit_factory={path!r}: {module_name} has no callable {attr!r}.")
    kit: object = factory(scratch)
    if not isinstance(kit, ReceiverKit):
        raise TypeError(f"kit_factory={path!r} built {kit!r}, not a ReceiverKit.")
    return kit


def register_target(kit: ReceiverKit, runs: list[tuple[str, str]] | None) -> TargetWorkflow:
    """Register the workflow receivers are bound to (the same name in every process)."""

    def receiver_conformance_workflow(*args: Any, **kwargs: Any) -> str:
        key = kit.event_key(args, kwargs)
        if runs is not None:
            runs.append((DBOS.workflow_id or "", key))
        return key

    # Decorated by a call, not with @: an import hook that adds a decorator (beartype's,
    # in this repository's tests) then wraps the function inside DBOS's wrapper, not
    # around it, and ``func`` stays the registered wrapper that receivers compare with.
    func = DBOS.workflow(name=WORKFLOW_NAME)(receiver_conformance_workflow)
    return TargetWorkflow(func=func, name=WORKFLOW_NAME)


# --- observing workflow starts ---------------------------------------------------------


class StartObserver:
    """Counts the workflow starts made through ``DBOS.start_workflow_registered`` and its
    async twin (the receiver API's way to start a workflow for an event), and runs
    optional hooks right before and after each."""

    _lock: threading.Lock
    _counts: dict[str, int]
    before: StartHook | None
    after: StartHook | None

    def __init__(self, before: StartHook | None = None, after: StartHook | None = None) -> None:
        self._lock = threading.Lock()
        self._counts = {}
        self.before = before
        self.after = after

    def count(self, workflow_id: str) -> int:
        with self._lock:
            return self._counts.get(workflow_id, 0)

    def _started(self, workflow_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        with self._lock:
            self._counts[workflow_id] = self._counts.get(workflow_id, 0) + 1
        if self.after is not None:
            self.after(workflow_id, args, kwargs)

    @contextlib.contextmanager
    def installed(self) -> Generator["StartObserver", None, None]:
        """Patch the two statics on DBOS (and their aliases in dbos_sdk.receiver) while
        the block runs."""
        sync_start = DBOS.start_workflow_registered
        async_start = DBOS.start_workflow_registered_async

        def start(
            reg: MethodRegistration,
            args: Sequence[Any],
            kwargs: Mapping[str, Any],
            options: StartWorkflowOptions,
        ) -> WorkflowHandle[Any]:
            if self.before is not None:
                self.before(options.workflow_id, args, kwargs)
            handle = sync_start(reg, args, kwargs, options)
            self._started(handle.workflow_id, args, kwargs)
            return handle

        async def start_async(
            reg: MethodRegistration,
            args: Sequence[Any],
            kwargs: Mapping[str, Any],
            options: StartWorkflowOptions,
        ) -> WorkflowHandleAsync[Any]:
            if self.before is not None:
                self.before(options.workflow_id, args, kwargs)
            handle = await async_start(reg, args, kwargs, options)
            self._started(handle.workflow_id, args, kwargs)
            return handle

        patched: dict[str, Callable[..., Any]] = {
            "start_workflow_registered": start,
            "start_workflow_registered_async": start_async,
        }
        missing = object()
        saved_dbos = {name: DBOS.__dict__.get(name, missing) for name in patched}
        saved_module = {name: getattr(receiver_api, name) for name in patched}
        for name, func in patched.items():
            setattr(DBOS, name, staticmethod(func))
            setattr(receiver_api, name, func)
        try:
            yield self
        finally:
            for name, old in saved_dbos.items():
                if old is missing:
                    delattr(DBOS, name)
                else:
                    setattr(DBOS, name, old)
            for name, old in saved_module.items():
                setattr(receiver_api, name, old)


# --- recording lifecycle calls -------------------------------------------------------------


class LifecycleLog:
    """What happened at launch and shutdown, in order, as short event names."""

    events: list[str]
    facts: dict[str, object]
    endpoint_lines: list[str]

    def __init__(self) -> None:
        self.events = []
        self.facts = {}
        self.endpoint_lines = []

    def index(self, event: str) -> int:
        check(event in self.events, f"{event!r} never happened; what happened: {self.events}")
        return self.events.index(event)

    def before(self, first: str, then: str, why: str) -> None:
        check(
            self.index(first) < self.index(then),
            f"{why}: expected {first!r} before {then!r}, but the order was {self.events}",
        )


class Sentinel(DBOSLifecycleCallback):
    """A lifecycle callback registered around the receiver under test."""

    label: str
    log: LifecycleLog

    def __init__(self, label: str, log: LifecycleLog) -> None:
        self.label = label
        self.log = log

    def initialize(self) -> None:
        self.log.events.append(f"{self.label} initialize")

    def destroy(self) -> None:
        self.log.events.append(f"{self.label} destroy")

    def log_registered_endpoints(self) -> None:
        self.log.events.append(f"{self.label} endpoints")


class _ThreadRecords(logging.Handler):
    """Keeps the log records one thread emits."""

    thread: int
    records: list[logging.LogRecord]

    def __init__(self, thread: int) -> None:
        super().__init__(logging.DEBUG)
        self.thread = thread
        self.records = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.records.append(record)


@contextlib.contextmanager
def captured_log_lines() -> Generator[list[str], None, None]:
    """The messages logged (at INFO or above, by any logger) on this thread meanwhile."""
    root = logging.getLogger()
    handler = _ThreadRecords(threading.get_ident())
    level = root.level
    lines: list[str] = []
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level != logging.NOTSET else logging.INFO)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        lines.extend(r.getMessage() for r in handler.records if r.levelno >= logging.INFO)


def watch_receiver_hooks(
    hooks: Sequence[PluginHook], log: LifecycleLog, on_initialize: Callable[[], None]
) -> None:
    """Record the lifecycle calls of the receiver's callbacks (they are the hooks its
    bind registered) and the log lines of its log_registered_endpoints."""
    for hook in hooks:
        start, stop, announce = hook.start, hook.stop, hook.announce

        def wrapped_start(start: Callable[[], None] = start) -> None:
            on_initialize()
            log.events.append("receiver initialize")
            start()
            log.events.append("receiver initialized")

        def wrapped_stop(stop: Callable[[], None] = stop) -> None:
            log.events.append("receiver destroy")
            try:
                stop()
            except Exception as exc:
                log.facts["destroy_error"] = f"{type(exc).__name__}: {exc}"
                raise
            log.events.append("receiver destroyed")
            try:  # workflow processing must still run now
                handle = DBOS.start_workflow(_probe())
                log.facts["workflow_after_destroy"] = handle.get_result(timeout=10)
            except Exception as exc:
                log.facts["workflow_after_destroy"] = f"{type(exc).__name__}: {exc}"

        hook.start = wrapped_start
        hook.stop = wrapped_stop
        if announce is not None:

            def wrapped_announce(announce: Callable[[], None] = announce) -> None:
                log.events.append("receiver endpoints")
                with captured_log_lines() as lines:
                    announce()
                log.endpoint_lines.extend(lines)

            hook.announce = wrapped_announce


def register_datasource_probe(log: LifecycleLog) -> None:
    """A datasource that only records when it is initialized and destroyed."""
    with REGISTRY.lock:
        REGISTRY.check_open("the conformance datasource probe")
        REGISTRY.datasources.append(
            PluginHook(
                "receiver-conformance-datasource",
                lambda: log.events.append("datasource initialize"),
                lambda: log.events.append("datasource destroy"),
            )
        )


# --- the probe workflow (recovery, and workflows run while receivers stop) ---------------

_probe_func: list[Callable[[], str]] = []


def _probe() -> Callable[[], str]:
    return _probe_func[0]


def register_probe() -> None:
    def receiver_conformance_probe() -> str:
        return "ran"

    _probe_func[:] = [DBOS.workflow(name=PROBE_NAME)(receiver_conformance_probe)]


# --- a session --------------------------------------------------------------------------


class Session:
    """One check's DBOS runtime, receiver and observations (use :func:`open_session`)."""

    kit: ReceiverKit
    config: DBOSConfig
    target: TargetWorkflow
    runs: list[tuple[str, str]]
    observer: StartObserver
    hooks: list[PluginHook]

    def __init__(self, kit: ReceiverKit, config: DBOSConfig) -> None:
        self.kit = kit
        self.config = config
        self.runs = []
        self.target = register_target(kit, self.runs)
        self.observer = StartObserver()
        self.hooks = []
        register_probe()
        DBOS(config)

    @property
    def kit_name(self) -> str:
        return type(self.kit).__name__

    def bind(self) -> Binding[Any, Any, Any]:
        """Bind the receiver to the target workflow; remember the callbacks it registered."""
        return self.registering(lambda: self.kit.bind(self.target))

    def registering(self, bind: Callable[[], T], *, require: bool = True) -> T:
        """Run ``bind``; the lifecycle callbacks it registered are the receiver's."""
        before = len(REGISTRY.receivers)
        result = bind()
        self.hooks = list(REGISTRY.receivers[before:])
        if require:
            self.require_hooks()
        return result

    def require_hooks(self) -> None:
        check(
            bool(self.hooks),
            f"{self.kit_name} registered no lifecycle callback when binding "
            "(DBOS.register_lifecycle_callback): the receiver would never be initialized.",
        )

    def launch(self) -> int:
        """Launch DBOS; return the time just before, in epoch milliseconds."""
        at = int(time.time() * 1000)
        DBOS.launch()
        return at

    def shutdown(self) -> None:
        DBOS.shutdown(workflow_timeout_s=2)

    def plant_pending_workflow(self) -> None:
        """Record a PENDING probe workflow of this executor, as a crashed process leaves
        one behind, for the next launch to recover."""
        config = self.config
        no_arguments: tuple[tuple[object, ...], dict[str, object]] = ((), {})
        sysdb = open_system_database(config)
        try:
            sysdb.migrate()
            t = now_ms()
            sysdb.insert_workflow(
                WorkflowRow(
                    workflow_id=PENDING_ID,
                    status="PENDING",
                    name=PROBE_NAME,
                    class_name=None,
                    config_name=None,
                    inputs=config.serializer.serialize(no_arguments),
                    output=None,
                    error=None,
                    serialization=config.serializer.name,
                    executor_id=config.executor_id,
                    application_version=config.application_version,
                    queue_name=None,
                    priority=0,
                    authenticated_user=None,
                    assumed_role=None,
                    authenticated_roles=None,
                    created_at=t,
                    updated_at=t,
                    started_at=t,
                    completed_at=None,
                    timeout_ms=None,
                    deadline_epoch_ms=None,
                    recovery_attempts=0,
                    forked_from=None,
                )
            )
        finally:
            sysdb.close()

    def deliver(self, key: str) -> Delivery:
        delivery = self.kit.deliver(key)
        check(
            bool(delivery.key) and bool(delivery.workflow_id),
            f"{self.kit_name}.deliver({key!r}) returned {delivery}: a key and a workflow ID "
            "are required.",
        )
        return delivery

    # --- workflows by event ------------------------------------------------------------

    def _key_of(self, status: WorkflowStatus) -> str:
        if status.input is None:
            return f"<unreadable input of {status.workflow_id}>"
        args, kwargs = status.input
        try:
            return self.kit.event_key(args, kwargs)
        except Exception as exc:
            return f"<{self.kit_name}.event_key failed: {type(exc).__name__}: {exc}>"

    def by_key(self) -> dict[str, list[WorkflowStatus]]:
        out: dict[str, list[WorkflowStatus]] = {}
        for status in DBOS.list_workflows(name=self.target.name):
            out.setdefault(self._key_of(status), []).append(status)
        return out

    def describe(self) -> str:
        found = [
            (s.workflow_id, key, s.status)
            for key, statuses in self.by_key().items()
            for s in statuses
        ]
        return f"workflows of {self.target.name!r} (id, event key, status): {found}"

    def wait_done(self, deliveries: Sequence[Delivery]) -> None:
        """Wait until every delivered event has a finished workflow."""

        def done() -> bool:
            groups = self.by_key()
            return all(any(s.status in FINISHED for s in groups.get(d.key, [])) for d in deliveries)

        keys = [d.key for d in deliveries]
        wait_until(
            done,
            self.kit.dispatch_timeout,
            lambda: f"a finished workflow for each of the events {keys}; {self.describe()}",
        )

    def wait_started(self, delivery: Delivery, times: int, what: str) -> None:
        """Wait until the receiver has started ``delivery``'s workflow ID ``times`` times
        in this process (through DBOS.start_workflow_registered or its async twin)."""
        wait_until(
            lambda: self.observer.count(delivery.workflow_id) >= times,
            self.kit.dispatch_timeout,
            lambda: (
                f"{what}: the receiver started {delivery.workflow_id!r} "
                f"{self.observer.count(delivery.workflow_id)} time(s) in this process, "
                f"expected {times} (the suite observes DBOS.start_workflow_registered and "
                f"start_workflow_registered_async); {self.describe()}"
            ),
        )

    def settle(self) -> None:
        time.sleep(self.kit.settle_seconds)

    def check_one_workflow_per_event(self, deliveries: Sequence[Delivery]) -> None:
        """Each delivered event started exactly one workflow, under the ID derived from
        its identity, which succeeded; and (unless the kit's receiver starts workflows by
        itself) no workflow was started for anything else."""
        groups = self.by_key()
        for d in deliveries:
            found = groups.get(d.key, [])
            ids = [s.workflow_id for s in found]
            check(
                len(found) == 1,
                f"event {d.key!r} started {len(found)} workflows {ids}, expected exactly one "
                f"(under {d.workflow_id!r}); {self.describe()}",
            )
            (status,) = found
            check(
                status.workflow_id == d.workflow_id,
                f"event {d.key!r} started workflow {status.workflow_id!r}, but the ID derived "
                f"from the event's identity is {d.workflow_id!r}",
            )
            check(
                status.status == "SUCCESS",
                f"workflow {status.workflow_id!r} of event {d.key!r} is {status.status}"
                + (f": {status.error!r}" if status.error is not None else ""),
            )
        if self.kit.unsolicited_events is None:
            extra = sorted(set(groups) - {d.key for d in deliveries})
            check(
                not extra,
                f"workflows were started for events the suite did not deliver: {extra}; "
                f"{self.describe()} (if the receiver starts workflows by itself, say why in "
                f"{self.kit_name}.unsolicited_events)",
            )
        ran = [key for _, key in self.runs]
        for d in deliveries:
            check(
                ran.count(d.key) <= 1,
                f"the workflow of event {d.key!r} ran {ran.count(d.key)} times in this process",
            )

    # --- dispatch state ------------------------------------------------------------------

    def state(self, ref: DispatchStateRef) -> DBOSExternalState | None:
        return DBOS.get_event_dispatch_state(ref.service, ref.workflow_fn_name, ref.key)

    def wait_state(
        self, ref: DispatchStateRef, ok: Callable[[DBOSExternalState], bool], what: str
    ) -> DBOSExternalState:
        found: list[DBOSExternalState | None] = [None]

        def done() -> bool:
            found[0] = self.state(ref)
            return found[0] is not None and ok(found[0])

        wait_until(done, self.kit.dispatch_timeout, lambda: f"{what}; stored: {found[0]}")
        state = found[0]
        assert state is not None
        return state


@contextlib.contextmanager
def open_session(kit: ReceiverKit, config: DBOSConfig) -> Generator[Session, None, None]:
    """A session whose registrations, observers and runtime end with the block."""
    with isolated_registry():
        session = Session(kit, config)
        try:
            with session.observer.installed():
                yield session
        finally:
            DBOS.shutdown(workflow_timeout_s=2)
