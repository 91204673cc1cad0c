"""The statics on DBOS that event-receiver authors use (also exported by dbos_sdk.receiver)."""

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard, TypeVar, overload

from dbos_sdk._context import SetWorkflowOptions, authed
from dbos_sdk._handles import (
    WorkflowHandle,
    WorkflowHandleAsync,
    enqueue_workflow,
    start_in_background,
)
from dbos_sdk._instances import DBOSConfiguredInstance
from dbos_sdk._queue import Queue
from dbos_sdk._receiver_types import (
    DBOSExternalState,
    DBOSLifecycleCallback,
    ExternalRegistration,
    MethodRegistration,
    ParamInfo,
    ReceiverRegistry,
    ScheduleMode,
    StartWorkflowOptions,
)
from dbos_sdk._registry import REGISTRY, PluginHook, RegisteredFunction, registration_of
from dbos_sdk._runtime import current_runtime
from dbos_sdk._sysdb import DispatchStateRow
from dbos_sdk._workflow import runtime_for
from dbos_sdk.errors import DBOSLaunchError

C = TypeVar("C")
M = TypeVar("M")
P = TypeVar("P")

External = type[Any] | str | DBOSLifecycleCallback
"""An untyped receiver key: its class, an instance of it, or a name."""

ScheduledF = TypeVar("ScheduledF", bound=Callable[[datetime, datetime], Any])
"""A scheduled workflow: called with (scheduled_time, actual_time); sync or async."""

__all__ = ["DBOSLaunchError", "ReceiverAPI"]  # DBOSLaunchError lives in dbos_sdk.errors


@dataclass(slots=True, eq=False)
class _MethodAssoc:
    func: Callable[..., Any]
    name: str | None
    class_name: str | None
    info: Any
    params: dict[str, ParamInfo[Any]] = field(default_factory=lambda: {})


@dataclass(slots=True, eq=False)
class _Associations:
    """What one receiver (one ``external``) associated with classes and functions."""

    registry: ReceiverRegistry[Any, Any, Any] | None
    classes: dict[str, Any] = field(default_factory=lambda: {})
    methods: dict[Callable[..., Any], _MethodAssoc] = field(default_factory=lambda: {})

    def new(self, kind: str) -> Any:
        if self.registry is None:
            return {}
        factory: Callable[[], Any] = getattr(self.registry, f"{kind}_info")
        return factory()


def _assocs(external: object, what: str) -> _Associations:
    with REGISTRY.lock:
        REGISTRY.check_open(f"an association ({what}) of {external!r}")
        key: object = external if _hashable(external) else id(external)
        found = REGISTRY.associations.get(key)
        if found is None:
            registry = external if _is_registry(external) else None
            found = _Associations(registry)
            REGISTRY.associations[key] = found
        assert isinstance(found, _Associations)
        return found


def _is_registry(obj: object) -> TypeGuard[ReceiverRegistry[Any, Any, Any]]:
    return isinstance(obj, ReceiverRegistry)


def _hashable(obj: object) -> bool:
    try:
        hash(obj)
    except TypeError:
        return False
    return True


def _raw(func: Callable[..., Any]) -> Callable[..., Any]:
    """The undecorated function behind a DBOS wrapper or bound method."""
    target: Callable[..., Any] = getattr(func, "__func__", func)
    reg = registration_of(target)
    return reg.func if reg is not None else target


def _reg_for(raw: Callable[..., Any]) -> RegisteredFunction | None:
    for reg in REGISTRY.functions.values():
        if reg.func is raw:
            return reg
    return None


def _class_name_of(func: Callable[..., Any]) -> str | None:
    parts = func.__qualname__.split(".")
    if len(parts) > 1 and parts[-2] != "<locals>":
        return ".".join(parts[:-1])
    return None


def _method(
    a: _Associations, func: Callable[..., Any], name: str | None, class_name: str | None
) -> _MethodAssoc:
    raw = _raw(func)
    entry = a.methods.get(raw)
    if entry is None:
        entry = _MethodAssoc(raw, name, class_name or _class_name_of(raw), a.new("method"))
        a.methods[raw] = entry
    return entry


class ReceiverAPI:
    """Mixed into DBOS: lifecycle callbacks, associations, dispatch state, registered starts."""

    @staticmethod
    def register_lifecycle_callback(cb: DBOSLifecycleCallback) -> None:
        """Take part in launch and shutdown (see DBOSLifecycleCallback). Before launch only."""
        own_name = getattr(cb, "name", None)
        name = type(cb).__qualname__ + (f" {own_name!r}" if isinstance(own_name, str) else "")

        def start() -> None:
            try:
                _run_maybe_async(cb.initialize())
            except Exception as exc:
                raise DBOSLaunchError(
                    f"Receiver {name} failed to initialize at DBOS.launch(): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

        def stop() -> None:
            _run_maybe_async(cb.destroy())

        with REGISTRY.lock:
            REGISTRY.check_open(f"lifecycle callback {name}")
            REGISTRY.receivers.append(
                PluginHook(name, start, stop, announce=cb.log_registered_endpoints)
            )

    @overload
    @staticmethod
    def associate_class_with_info(
        external: ReceiverRegistry[C, M, P], cls: type[Any] | str
    ) -> C: ...

    @overload
    @staticmethod
    def associate_class_with_info(external: External, cls: type[Any] | str) -> dict[str, Any]: ...

    @staticmethod
    def associate_class_with_info(external: object, cls: type[Any] | str) -> Any:
        """The receiver's info object for ``cls`` (created on first call), to fill in."""
        a = _assocs(external, f"class {cls}")
        key = cls if isinstance(cls, str) else cls.__qualname__
        if key not in a.classes:
            a.classes[key] = a.new("class")
        return a.classes[key]

    @overload
    @staticmethod
    def associate_function_with_info(
        external: ReceiverRegistry[C, M, P],
        func: Callable[..., Any],
        *,
        name: str | None = None,
        class_name: str | None = None,
    ) -> M: ...

    @overload
    @staticmethod
    def associate_function_with_info(
        external: External,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        class_name: str | None = None,
    ) -> dict[str, Any]: ...

    @staticmethod
    def associate_function_with_info(
        external: object,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        class_name: str | None = None,
    ) -> Any:
        """The receiver's info object for ``func`` (created on first call), to fill in.

        ``func`` may be the function before or after its DBOS decorators; ``name``
        overrides the name get_associated_info filters on; ``class_name`` names the class
        of a method (default: taken from its qualified name).
        """
        a = _assocs(external, f"function {getattr(func, '__qualname__', func)}")
        return _method(a, func, name, class_name).info

    @overload
    @staticmethod
    def associate_param_with_info(
        external: ReceiverRegistry[C, M, P],
        func: Callable[..., Any],
        *,
        param: int | str,
        name: str | None = None,
        class_name: str | None = None,
    ) -> P | None: ...

    @overload
    @staticmethod
    def associate_param_with_info(
        external: External,
        func: Callable[..., Any],
        *,
        param: int | str,
        name: str | None = None,
        class_name: str | None = None,
    ) -> dict[str, Any] | None: ...

    @staticmethod
    def associate_param_with_info(
        external: object,
        func: Callable[..., Any],
        *,
        param: int | str,
        name: str | None = None,
        class_name: str | None = None,
    ) -> Any:
        """The receiver's info object for one parameter (by position or name) of ``func``;
        None if the function has no such parameter."""
        a = _assocs(external, f"a parameter of {getattr(func, '__qualname__', func)}")
        entry = _method(a, func, name, class_name)
        params = list(inspect.signature(entry.func).parameters)
        if isinstance(param, int):
            if not 0 <= param < len(params):
                return None
            pname, index = params[param], param
        else:
            if param not in params:
                return None
            pname, index = param, params.index(param)
        if pname not in entry.params:
            entry.params[pname] = ParamInfo(name=pname, index=index, param_config=a.new("param"))
        return entry.params[pname].param_config

    @overload
    @staticmethod
    def get_associated_info(
        external: ReceiverRegistry[C, M, P],
        cls: type[Any] | str | None = None,
        func_name: str | None = None,
    ) -> Sequence[ExternalRegistration[C, M, P]]: ...

    @overload
    @staticmethod
    def get_associated_info(
        external: External, cls: type[Any] | str | None = None, func_name: str | None = None
    ) -> Sequence[ExternalRegistration[dict[str, Any], dict[str, Any], dict[str, Any]]]: ...

    @staticmethod
    def get_associated_info(
        external: object, cls: type[Any] | str | None = None, func_name: str | None = None
    ) -> Sequence[ExternalRegistration[Any, Any, Any]]:
        """What ``external`` associated, optionally only for one class and/or function
        (matched by registered name, function name or the name given at association)."""
        key: object = external if _hashable(external) else id(external)
        a = REGISTRY.associations.get(key)
        if not isinstance(a, _Associations):
            return []
        want_class = cls if cls is None or isinstance(cls, str) else cls.__qualname__
        out: list[ExternalRegistration[Any, Any, Any]] = []
        for entry in a.methods.values():
            reg = _reg_for(entry.func)
            mreg = MethodRegistration(entry.func, reg, entry.class_name)
            if want_class is not None and entry.class_name != want_class:
                continue
            names = {entry.func.__name__, entry.func.__qualname__, mreg.name, entry.name}
            if func_name is not None and func_name not in names:
                continue
            out.append(
                ExternalRegistration(
                    class_config=a.classes.get(entry.class_name) if entry.class_name else None,
                    method_config=entry.info,
                    param_config=sorted(entry.params.values(), key=lambda p: p.index),
                    method_reg=mreg,
                )
            )
        return out

    @staticmethod
    def get_registered_workflows() -> Sequence[MethodRegistration]:
        """Every registered workflow."""
        return [MethodRegistration(r.func, r, _class_name_of(r.func)) for r in REGISTRY.workflows()]

    @staticmethod
    def get_registered_workflow_instances() -> Mapping[str, Mapping[str, DBOSConfiguredInstance]]:
        """Configured instances by class name, then config name (for class-based workflows:
        call ``MethodRegistration.invoke(instance, ...)``)."""
        out: dict[str, dict[str, DBOSConfiguredInstance]] = {}
        for (class_name, config_name), inst in REGISTRY.instances.items():
            if isinstance(inst, DBOSConfiguredInstance):
                out.setdefault(class_name, {})[config_name] = inst
        return out

    @staticmethod
    def start_workflow_registered(
        reg: MethodRegistration,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: StartWorkflowOptions,
    ) -> WorkflowHandle[Any]:
        """Durably start (or enqueue) a registered workflow for a generic caller. When this
        returns, the workflow is recorded: acknowledge the event only then."""
        with ExitStack() as stack:
            if options.authenticated_user is not None or options.authenticated_roles is not None:
                stack.enter_context(
                    authed(options.authenticated_user, options.authenticated_roles or ())
                )
            stack.enter_context(
                SetWorkflowOptions(
                    workflow_id=options.workflow_id,
                    timeout=options.timeout,
                    deadline=options.deadline,
                )
            )
            fn = reg.registered_function
            if options.queue_name is not None:
                return enqueue_workflow(options.queue_name, fn, tuple(args), dict(kwargs))
            wfid = start_in_background(
                fn, tuple(args), dict(kwargs), "DBOS.start_workflow_registered"
            )
            return WorkflowHandle(wfid)

    @staticmethod
    async def start_workflow_registered_async(
        reg: MethodRegistration,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: StartWorkflowOptions,
    ) -> WorkflowHandleAsync[Any]:
        """Async twin of start_workflow_registered: the database write runs off the loop."""
        handle = await asyncio.to_thread(
            ReceiverAPI.start_workflow_registered, reg, args, kwargs, options
        )
        return WorkflowHandleAsync(handle.workflow_id)

    @staticmethod
    def upsert_event_dispatch_state(state: DBOSExternalState) -> DBOSExternalState:
        """Store a receiver's state under the versioning rules of DBOSExternalState and
        return what is stored afterwards (the newer value when this write lost)."""
        rt = runtime_for("DBOS.upsert_event_dispatch_state")
        row = rt.sysdb.upsert_dispatch_state(
            DispatchStateRow(
                state.service,
                state.workflow_fn_name,
                state.key,
                state.value,
                state.update_time,
                state.update_seq,
            )
        )
        return _state(row)

    @staticmethod
    def get_event_dispatch_state(
        service: str, workflow_fn_name: str, key: str
    ) -> DBOSExternalState | None:
        """A receiver's stored state for one key, or None."""
        rt = runtime_for("DBOS.get_event_dispatch_state")
        row = rt.sysdb.get_dispatch_state(service, workflow_fn_name, key)
        return _state(row) if row is not None else None

    @staticmethod
    def scheduled(
        cron: str,
        *,
        mode: ScheduleMode = "exactly_once_per_interval",
        queue: Queue | str | None = None,
    ) -> Callable[[ScheduledF], ScheduledF]:
        """Run the decorated workflow on a cron schedule (see dbos_sdk.scheduler).

        Stack it above ``@DBOS.workflow()`` on a function taking ``(scheduled_time:
        datetime, actual_time: datetime)`` (UTC, timezone-aware). ``cron`` has 5 fields,
        or 6 with seconds first (``"*/5 * * * * *"``: every 5 seconds), evaluated in UTC.
        Each tick runs once, under the workflow ID ``sched-<name>-<scheduled time>``.
        ``mode="exactly_once_per_interval"`` also runs the ticks missed while no process
        ran (the most recent 1000 at most), ``"when_active"`` only the ticks that fall
        while DBOS is launched. With ``queue``, each tick is enqueued there instead of
        started. An invalid ``cron`` fails DBOS.launch().
        """
        from dbos_sdk.scheduler import scheduled

        return scheduled(cron, mode=mode, queue=queue)


def _state(row: DispatchStateRow) -> DBOSExternalState:
    return DBOSExternalState(
        service=row.service,
        workflow_fn_name=row.workflow_fn_name,
        key=row.key,
        value=row.value,
        update_time=row.update_time,
        update_seq=row.update_seq,
    )


def _run_maybe_async(result: object) -> None:
    """Await what an async lifecycle member returned, on the runtime's event loop."""
    if inspect.isawaitable(result):
        rt = current_runtime()
        assert rt is not None

        async def wait() -> None:
            await result

        rt.run_coroutine(wait())
