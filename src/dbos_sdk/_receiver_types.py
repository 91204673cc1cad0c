"""Records and protocols of the event-receiver API (re-exported by dbos_sdk.receiver)."""

import inspect
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

import attrs

from dbos_sdk._registry import RegisteredFunction
from dbos_sdk.errors import DBOSConfigurationError

ScheduleMode = Literal["exactly_once_per_interval", "when_active"]
"""How a scheduled workflow treats ticks missed while no executor ran: run each once
(from the dispatch state), or only the ticks that fall while the process is active."""

ClassInfoT = TypeVar("ClassInfoT")
MethodInfoT = TypeVar("MethodInfoT")
ParamInfoT = TypeVar("ParamInfoT")
ClassInfoT_co = TypeVar("ClassInfoT_co", covariant=True)
MethodInfoT_co = TypeVar("MethodInfoT_co", covariant=True)
ParamInfoT_co = TypeVar("ParamInfoT_co", covariant=True)


@runtime_checkable
class DBOSLifecycleCallback(Protocol):
    """What an event receiver implements to take part in launch and shutdown.

    Every member is optional: subclass this class and override what you need (the
    defaults do nothing). ``initialize`` and ``destroy`` may be ``async def``.

    - ``initialize`` runs at launch, after the system database is ready, datasources are
      initialized and recovery has started (so workflows can be started), in
      registration order. An exception fails DBOS.launch() with DBOSLaunchError naming
      the receiver.
    - ``log_registered_endpoints`` runs after every receiver was initialized; log one line
      per association.
    - ``destroy`` runs at shutdown, before workflow processing stops. Errors are logged.
    """

    def initialize(self) -> Awaitable[None] | None:
        """Connect and start receiving events."""
        return None

    def destroy(self) -> Awaitable[None] | None:
        """Stop receiving and close connections."""
        return None

    def log_registered_endpoints(self) -> None:
        """Log one line per function this receiver dispatches to."""
        return None


class MethodRegistration:
    """A function that a receiver associated with: what DBOS knows about it.

    ``invoke`` calls it through every DBOS wrapper (so a workflow runs durably);
    ``registered_function`` is what to pass to DBOS.start_workflow or
    DBOS.start_workflow_registered.
    """

    func: Callable[..., Any]
    """The undecorated function."""
    registered_function: Callable[..., Any]
    """The function with its DBOS wrappers (the function itself if it has none)."""
    name: str
    """The registered name (the qualified name for functions DBOS does not wrap)."""
    class_name: str | None
    kind: str | None
    """"workflow", "step", "transaction", or None for a function DBOS does not wrap."""
    is_async: bool
    required_roles: tuple[str, ...] | None
    """The roles a caller needs (``@DBOS.required_roles``), or None when anyone may call it."""

    def __init__(
        self, func: Callable[..., Any], reg: RegisteredFunction | None, class_name: str | None
    ) -> None:
        self.func = reg.func if reg is not None else func
        self.registered_function = (
            reg.wrapper if reg is not None and reg.wrapper is not None else func
        )
        self.name = reg.name if reg is not None else func.__qualname__
        self.class_name = class_name
        self.kind = reg.kind if reg is not None else None
        self.is_async = inspect.iscoroutinefunction(self.func)
        self.required_roles = reg.required_roles if reg is not None else None

    def invoke(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function with all its DBOS wrappers (for an async function: a coroutine)."""
        return self.registered_function(*args, **kwargs)

    def _identity(self) -> tuple[object, ...]:
        return (self.func, self.registered_function, self.class_name)

    def __eq__(self, other: object) -> bool:
        # Each lookup builds a new MethodRegistration: equal when they describe one function.
        if not isinstance(other, MethodRegistration):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return f"MethodRegistration({self.name!r}, kind={self.kind!r})"


@attrs.frozen(kw_only=True)
class ParamInfo(Generic[ParamInfoT_co]):
    """A receiver's information about one parameter of an associated function."""

    name: str
    index: int
    param_config: ParamInfoT_co


@attrs.frozen(kw_only=True)
class ExternalRegistration(Generic[ClassInfoT_co, MethodInfoT_co, ParamInfoT_co]):
    """Everything one receiver associated with one function."""

    class_config: ClassInfoT_co | None
    method_config: MethodInfoT_co
    param_config: Sequence[ParamInfo[ParamInfoT_co]]
    method_reg: MethodRegistration


class ReceiverRegistry(Generic[ClassInfoT, MethodInfoT, ParamInfoT]):
    """A receiver's typed key for the association functions on DBOS.

    Pass it as ``external`` and DBOS creates each info object with the given factory and
    hands back the receiver's own types (``DBOS.get_associated_info(registry)`` is a
    ``Sequence[ExternalRegistration[ClassInfoT, MethodInfoT, ParamInfoT]]``). Any other
    ``external`` (a class, an instance, a name) gets plain ``dict`` info objects.
    """

    name: str
    class_info: Callable[[], ClassInfoT]
    method_info: Callable[[], MethodInfoT]
    param_info: Callable[[], ParamInfoT]

    def __init__(
        self,
        name: str,
        *,
        class_info: Callable[[], ClassInfoT],
        method_info: Callable[[], MethodInfoT],
        param_info: Callable[[], ParamInfoT],
    ) -> None:
        self.name = name
        self.class_info = class_info
        self.method_info = method_info
        self.param_info = param_info

    def __repr__(self) -> str:
        return f"ReceiverRegistry({self.name!r})"


@attrs.frozen(kw_only=True)
class DBOSExternalState:
    """A receiver's durable state for one key (e.g. the last event it dispatched).

    Versioning rules of DBOS.upsert_event_dispatch_state: an ``update_time`` or
    ``update_seq`` lower than the stored one changes nothing, and neither does an equal
    one; with both given the value is replaced if either is greater. A row never
    versioned is last-write-wins. An unversioned write (both None) to a versioned row
    replaces the value and keeps the stored versions. The stored versions never go
    back (each is the greatest seen), so later versioned writes always compare against
    the highest version seen. The upsert returns what is stored afterwards: a writer
    whose version lost sees the newer value.
    """

    service: str
    workflow_fn_name: str
    key: str
    value: str | None = None
    update_time: float | None = None
    update_seq: int | None = None


def _check_timeout(_inst: object, _attr: object, value: float | None) -> None:
    if value is not None and value <= 0:
        raise DBOSConfigurationError(
            f"StartWorkflowOptions(timeout={value!r}): a timeout is a positive number of seconds."
        )


@attrs.frozen(kw_only=True)
class StartWorkflowOptions:
    """The closed set of options a receiver may give DBOS.start_workflow_registered.

    An unknown option is a type error and, at run time, a TypeError: nothing is ignored.
    """

    workflow_id: str | None = None
    queue_name: str | None = None
    timeout: float | None = attrs.field(default=None, validator=_check_timeout)
    deadline: datetime | None = None
    authenticated_user: str | None = None
    authenticated_roles: Sequence[str] | None = None
