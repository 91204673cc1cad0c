"""What was registered before launch: workflows, steps, configured instances and queues."""

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from dbos_sdk.errors import DBOSRegistrationError

if TYPE_CHECKING:
    from dbos_sdk._queue import Queue

Kind = Literal["workflow", "step", "transaction"]


@dataclass(slots=True)
class StepOptions:
    retries_allowed: bool = False
    max_attempts: int = 3
    interval_seconds: float = 1.0
    backoff_rate: float = 2.0


@dataclass(slots=True, eq=False)
class RegisteredFunction:
    """A function that DBOS wraps, under the name it is recorded with."""

    name: str
    kind: Kind
    func: Callable[..., Any]
    is_async: bool
    wrapper: Callable[..., Any] | None = None
    step_options: StepOptions | None = None
    required_roles: tuple[str, ...] | None = None
    class_qualname: str | None = None


@dataclass(slots=True, eq=False)
class PluginHook:
    """How the runtime starts and stops one registered plugin (datasource or receiver)."""

    name: str
    start: Callable[[], None]
    stop: Callable[[], None]
    announce: Callable[[], None] | None = None
    """Called once every plugin of the kind has started (receivers log their endpoints)."""


@dataclass(slots=True, eq=False)
class Registry:
    """All registrations of this process. Frozen while the runtime is launched."""

    functions: dict[str, RegisteredFunction] = field(default_factory=lambda: {})
    instances: dict[tuple[str, str], object] = field(default_factory=lambda: {})
    queues: dict[str, "Queue"] = field(default_factory=lambda: {})
    datasources: list[PluginHook] = field(default_factory=lambda: [])
    """Started after the system database is ready and before recovery; stopped last."""
    receivers: list[PluginHook] = field(default_factory=lambda: [])
    """Started after recovery began, in registration order; stopped first."""
    associations: dict[object, Any] = field(default_factory=lambda: {})
    """Receivers' info objects, by receiver key (see dbos_sdk._receiver_api)."""
    launched: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)

    def check_open(self, what: str) -> None:
        if self.launched:
            raise DBOSRegistrationError(
                f"Cannot register {what} after DBOS.launch(): register every function, queue, "
                "datasource and receiver at import time, before launch()."
            )

    def add_function(self, reg: RegisteredFunction) -> None:
        with self.lock:
            self.check_open(f"{reg.kind} {reg.name!r}")
            old = self.functions.get(reg.name)
            # Re-running the same definition (a test that defines a workflow inside a
            # function) replaces it; another function under the same name is an error.
            if old is not None and _code_of(old.func) is not _code_of(reg.func):
                raise DBOSRegistrationError(
                    f"Two functions are registered under the name {reg.name!r} "
                    f"({_where(old.func)} and {_where(reg.func)}); give one of them another "
                    "name with name=..."
                )
            self.functions[reg.name] = reg

    def add_instance(self, class_name: str, config_name: str, instance: object) -> None:
        with self.lock:
            self.check_open(f"instance {class_name}({config_name!r})")
            old = self.instances.get((class_name, config_name))
            if old is not None and old is not instance and type(old) is not type(instance):
                raise DBOSRegistrationError(
                    f"Two instances of {class_name} are configured with the name "
                    f"{config_name!r}; give each instance its own config_name."
                )
            self.instances[(class_name, config_name)] = instance

    def workflows(self) -> Sequence[RegisteredFunction]:
        return [r for r in self.functions.values() if r.kind == "workflow"]


def _code_of(func: Callable[..., Any]) -> object:
    return getattr(func, "__code__", func)


def _where(func: Callable[..., Any]) -> str:
    code = getattr(func, "__code__", None)
    if code is None:
        return repr(func)
    return f"{code.co_filename}:{code.co_firstlineno}"


REGISTRY = Registry()
"""The process's registry: decorators run at import time, before any runtime exists."""

REG_ATTR = "__dbos_registration__"


def registration_of(func: object) -> RegisteredFunction | None:
    """The registration behind a DBOS-decorated function or bound method, if any."""
    target = getattr(func, "__func__", func)
    reg = getattr(target, REG_ATTR, None)
    return reg if isinstance(reg, RegisteredFunction) else None
