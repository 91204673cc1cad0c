"""What a receiver's author implements so the receiver conformance suite can drive it.

A :class:`ReceiverKit` knows what the suite cannot: how to bind the receiver to a
workflow (as an application would with the receiver's decorator), how to deliver an event
to the real server (publish a message, insert a row, send a request, wait for a clock
tick), how to offer it again, where the receiver records its configuration and its
dispatch state, and which capabilities the receiver lacks. Everything else -- launches,
crashes, the assertions -- is the suite's.

Capabilities a receiver may lack are declared, not skipped: those methods return
:class:`~dbos_sdk.testing.NotSupported` with the reason (the same record as in the
datasource suite), and the suite reports the check as skipped with that reason.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import attrs

from dbos_sdk import ReceiverRegistry
from dbos_sdk.testing._ds_kit import KitScratch, NotSupported, Supported

C = TypeVar("C")
M = TypeVar("M")
P = TypeVar("P")

WORKFLOW_NAME = "receiver_conformance_workflow"
"""The registered name (and ``__name__``) of the workflow the suite binds receivers to."""


@attrs.frozen(kw_only=True)
class TargetWorkflow:
    """The workflow the suite asks a kit to bind its receiver to.

    It is registered (``@DBOS.workflow(name=...)``), takes ``(*args, **kwargs)`` so that
    it fits any receiver's calling convention, and returns :meth:`ReceiverKit.event_key`
    of its arguments. Apply the receiver's decorator to ``func`` as user code would.
    """

    func: Callable[..., str]
    """The registered workflow (with its DBOS wrapper)."""
    name: str
    """Its registered name, :data:`WORKFLOW_NAME` (part of some receivers' workflow IDs)."""


@attrs.frozen(kw_only=True)
class Delivery:
    """One event the kit delivered: its key and the workflow ID the receiver must use."""

    key: str
    """The event's key, as :meth:`ReceiverKit.event_key` reads it from the workflow's
    arguments (the key the suite asked for; a clock tick names its own)."""
    workflow_id: str
    """The ID derived from the event's identity (message ID, sequence, tick time, ...)."""


@attrs.frozen(kw_only=True)
class Association(Generic[C, M, P]):
    """Where the receiver records its configuration of the bound workflow.

    The suite reads it back with ``DBOS.get_associated_info(registry)`` and expects one
    entry for the workflow, with the registry's own info types, that ``matches``.
    """

    registry: ReceiverRegistry[C, M, P]
    """The receiver's association key (its typed ReceiverRegistry)."""
    matches: Callable[[M], bool]
    """True when a method info describes this binding (the settings the kit bound with)."""


@attrs.frozen(kw_only=True)
class DispatchStateRef:
    """Where a receiver keeps its position for the bound workflow: the identity of its
    ``DBOSExternalState`` row (``DBOS.get_event_dispatch_state(service, workflow_fn_name,
    key)``)."""

    service: str
    workflow_fn_name: str
    key: str


@attrs.frozen(kw_only=True)
class Binding(Generic[C, M, P]):
    """What :meth:`ReceiverKit.bind` tells the suite about the receiver it bound."""

    association: Association[C, M, P]
    dispatch_state: DispatchStateRef | NotSupported
    """Where the receiver keeps its dispatch state, or why it keeps none (a broker that
    holds the position itself, a source that cannot be replayed)."""


@attrs.frozen(kw_only=True)
class Misconfiguration:
    """What the DBOSLaunchError of a misconfigured receiver must name besides the
    receiver and the workflow: the setting at fault and its value, e.g.
    ``["stream='NOPE'", "does not exist"]``."""

    mentions: Sequence[str]


class ReceiverKit(ABC):
    """A receiver under test and the real server it talks to (see the module docstring).

    The class (or any function taking a :class:`KitScratch`) is the *kit factory* that
    ``ReceiverConformance.kit_factory`` names. The suite builds one kit per check, calls
    :meth:`create_scratch` (make a fresh stream, queue or table, named after
    ``scratch.token``) and :meth:`drop_scratch` at the end. Each check calls :meth:`bind`
    once per process, before ``DBOS.launch()``, inside an isolated registry. The crash
    checks build a second kit from the same factory and scratch in a child process and
    bind it there, while :meth:`deliver` runs in the test process: derive every name the
    two share from the scratch.
    """

    scratch: KitScratch
    """Where this check's data lives: a fresh directory and a unique token."""
    unsolicited_events: ClassVar[str | None] = None
    """None: every workflow the receiver starts comes from an event the kit delivered
    (checked). Otherwise why the receiver also starts workflows by itself (a clock); the
    suite then checks only the events it delivered."""
    dispatch_timeout: ClassVar[float] = 30.0
    """Seconds an event may take to start its workflow and finish (including a broker's
    redelivery delay after a crash)."""
    settle_seconds: ClassVar[float] = 0.3
    """How long the suite waits for duplicates to show up before its final counts."""

    def __init__(self, scratch: KitScratch) -> None:
        self.scratch = scratch

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.scratch.token})"

    # --- the server ----------------------------------------------------------------------

    @abstractmethod
    def unreachable(self) -> str | None:
        """None when the receiver's server answers; otherwise why it does not (the suite
        then skips every check loudly, or fails them when ``CI`` is set or pytest runs
        with ``--dbos-require-servers``). A receiver without a server returns None."""

    def create_scratch(self) -> None:
        """Create this check's resources on the server (stream, queue, table...)."""
        return None

    def drop_scratch(self) -> None:
        """Remove what :meth:`create_scratch` and the receiver made (after shutdown)."""
        return None

    # --- the receiver and its events ------------------------------------------------------

    @abstractmethod
    def bind(self, target: TargetWorkflow) -> Binding[Any, Any, Any]:
        """Create the receiver (registering it with DBOS) and bind ``target.func`` to it,
        as an application would with the receiver's decorator; say where it associated
        the workflow and where it keeps its dispatch state."""

    @abstractmethod
    def deliver(self, key: str) -> Delivery:
        """Deliver one new event whose identity is derived from ``key`` to the real server
        (without waiting for its workflow); return it with its expected workflow ID."""

    @abstractmethod
    def event_key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        """The key of the event a workflow was started for, read from its arguments."""

    # --- capabilities --------------------------------------------------------------------

    @abstractmethod
    def redelivery(self) -> Supported | NotSupported:
        """Whether :meth:`redeliver` can offer a delivered event again to the running
        receiver."""

    def redeliver(self, delivery: Delivery) -> None:
        """Offer a delivered event again, as its source would (republish it with the same
        message ID, NOTIFY again, retry the request with the same idempotency key).
        Needed unless :meth:`redelivery` is NotSupported."""
        raise NotImplementedError(f"{type(self).__name__}.redeliver")

    @abstractmethod
    def delivery_while_down(self) -> Supported | NotSupported:
        """Whether an event delivered while no process runs the receiver is dispatched at
        the next launch."""

    @abstractmethod
    def crash_restart(self) -> Supported | NotSupported:
        """Whether the receiver can run in a child process that the suite SIGKILLs around
        a workflow start, and deliver the interrupted event again after a restart."""

    @abstractmethod
    def bind_misconfigured(self, target: TargetWorkflow) -> Misconfiguration | NotSupported:
        """Like :meth:`bind`, with a setting that must fail ``DBOS.launch()`` (an unknown
        stream, an unreachable server, an invalid schedule); say what the error must name."""


ReceiverKitFactory = Callable[[KitScratch], ReceiverKit]
"""What ``ReceiverConformance.kit_factory`` names: builds a kit on a scratch space."""
