"""A small receiver outside this repository's packages, with switchable bugs, and its kits.

``DirReceiver`` treats a directory as a broker: every ``<seq>-<key>.event`` file is an
event; the receiver starts the bound workflow for it, then acknowledges it (deletes the
file) and records ``seq`` in its dispatch state. Correct, it passes the receiver
conformance suite as a third-party receiver would; each ``*BugKit`` turns on one bug, and
tests/test_receiver_conformance.py checks that the suite catches it. The directory is
shared by processes, so the suite's crash checks work as with a real broker.
"""

import warnings

from beartype import BeartypeConf
from beartype.claw import beartype_package
from beartype.roar import BeartypeClawDecorWarning

warnings.simplefilter("error", BeartypeClawDecorWarning)
beartype_package("dbos_sdk", conf=BeartypeConf(claw_is_pep526=False, is_pep484_tower=True))

import os  # noqa: E402
import threading  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Mapping, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, ClassVar, TypeVar  # noqa: E402

from dbos_sdk import (  # noqa: E402
    DBOS,
    DBOSExternalState,
    DBOSLifecycleCallback,
    MethodRegistration,
    ReceiverRegistry,
    StartWorkflowOptions,
)
from dbos_sdk.testing import (  # noqa: E402
    Association,
    Binding,
    Delivery,
    DispatchStateRef,
    Misconfiguration,
    NotSupported,
    ReceiverKit,
    Supported,
    TargetWorkflow,
)

F = TypeVar("F", bound=Callable[..., Any])
STATE_KEY = "position"


class DirInfo:
    """What ``DirReceiver.watch`` records for a function."""

    directory: Path | None = None


def _nothing() -> None:
    return None


class DirReceiver(DBOSLifecycleCallback):
    """Starts the bound workflow once per ``<seq>-<key>.event`` file of a directory."""

    def __init__(
        self,
        name: str,
        *,
        random_ids: bool = False,
        ack_before_start: bool = False,
        unversioned_state: bool = False,
        quiet: bool = False,
        register: bool = True,
    ) -> None:
        self.name = name
        self.random_ids = random_ids
        self.ack_before_start = ack_before_start
        self.unversioned_state = unversioned_state
        self.quiet = quiet
        self.registry: ReceiverRegistry[None, DirInfo, None] = ReceiverRegistry(
            f"dir:{name}", class_info=_nothing, method_info=DirInfo, param_info=_nothing
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if register:
            DBOS.register_lifecycle_callback(self)

    def watch(self, directory: Path) -> Callable[[F], F]:
        def deco(func: F) -> F:
            DBOS.associate_function_with_info(self.registry, func).directory = directory
            return func

        return deco

    def initialize(self) -> None:
        self._stop = threading.Event()
        for reg in DBOS.get_associated_info(self.registry):
            directory = reg.method_config.directory
            assert directory is not None
            if not directory.is_dir():
                raise ValueError(
                    f"DirReceiver {self.name!r}, function {reg.method_reg.name!r}: "
                    f"directory={str(directory)!r} does not exist"
                )
            t = threading.Thread(
                target=self._run, args=(reg.method_reg, directory, self._stop), daemon=True
            )
            t.start()
            self._threads.append(t)

    def destroy(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()

    def log_registered_endpoints(self) -> None:
        if not self.quiet:
            for reg in DBOS.get_associated_info(self.registry):
                DBOS.logger.info(
                    "DirReceiver %r: %s -> %s",
                    self.name,
                    reg.method_config.directory,
                    reg.method_reg.name,
                )

    def _run(self, method: MethodRegistration, directory: Path, stop: threading.Event) -> None:
        while not stop.is_set():
            for path in sorted(directory.glob("*.event")):
                if stop.is_set():
                    return
                seq, key = path.stem.split("-", 1)
                wfid = f"dir-{uuid.uuid4().hex}" if self.random_ids else f"dir-{self.name}-{key}"
                if self.ack_before_start:
                    path.unlink()
                DBOS.start_workflow_registered(
                    method, (key,), {}, StartWorkflowOptions(workflow_id=wfid)
                )
                if not self.ack_before_start:
                    path.unlink()  # acknowledged: the workflow is recorded
                DBOS.upsert_event_dispatch_state(
                    DBOSExternalState(
                        service=self.name,
                        workflow_fn_name=method.name,
                        key=STATE_KEY,
                        value=seq,
                        update_seq=None if self.unversioned_state else int(seq),
                    )
                )
            stop.wait(0.05)


class DirKit(ReceiverKit):
    """The correct DirReceiver on the scratch directory's ``events`` folder."""

    RECEIVER = "conf"
    flags: ClassVar[Mapping[str, bool]] = {}
    _registered: ClassVar[bool] = True

    @property
    def events(self) -> Path:
        return Path(self.scratch.directory) / "events"

    def unreachable(self) -> str | None:
        return None

    def create_scratch(self) -> None:
        self.events.mkdir()

    def _receiver(self, target: TargetWorkflow, directory: Path) -> DirReceiver:
        receiver = DirReceiver(self.RECEIVER, register=self._registered, **self.flags)
        receiver.watch(directory)(target.func)
        return receiver

    def bind(self, target: TargetWorkflow) -> Binding[None, DirInfo, None]:
        receiver = self._receiver(target, self.events)
        return Binding(
            association=Association(
                registry=receiver.registry, matches=lambda info: info.directory == self.events
            ),
            dispatch_state=DispatchStateRef(
                service=self.RECEIVER, workflow_fn_name=target.name, key=STATE_KEY
            ),
        )

    def deliver(self, key: str) -> Delivery:
        counter = Path(self.scratch.directory) / "seq"
        seq = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(seq))
        staged = Path(self.scratch.directory) / f"{seq:08d}-{key}.tmp"
        staged.write_text(key)
        os.replace(staged, self.events / f"{seq:08d}-{key}.event")  # appears atomically
        return Delivery(key=key, workflow_id=f"dir-{self.RECEIVER}-{key}")

    def redeliver(self, delivery: Delivery) -> None:
        self.deliver(delivery.key)  # the same event, published again

    def event_key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        return str(args[0])

    def redelivery(self) -> Supported | NotSupported:
        return Supported()

    def delivery_while_down(self) -> Supported | NotSupported:
        return Supported()

    def crash_restart(self) -> Supported | NotSupported:
        return Supported()

    def bind_misconfigured(self, target: TargetWorkflow) -> Misconfiguration | NotSupported:
        missing = Path(self.scratch.directory) / "missing"
        self._receiver(target, missing)
        return Misconfiguration(mentions=[f"directory={str(missing)!r}", "does not exist"])


class RandomIdBugKit(DirKit):
    """Bug: a random workflow ID per delivery, not one derived from the event."""

    flags: ClassVar[Mapping[str, bool]] = {"random_ids": True}


class AckFirstBugKit(DirKit):
    """Bug: the event is acknowledged before its workflow is started."""

    flags: ClassVar[Mapping[str, bool]] = {"ack_before_start": True}
    dispatch_timeout: ClassVar[float] = 3.0


class UnversionedStateBugKit(DirKit):
    """Bug: the dispatch state is written without a version (last write wins)."""

    flags: ClassVar[Mapping[str, bool]] = {"unversioned_state": True}


class QuietBugKit(DirKit):
    """Bug: log_registered_endpoints logs nothing."""

    flags: ClassVar[Mapping[str, bool]] = {"quiet": True}


class UnregisteredBugKit(DirKit):
    """Bug: the receiver never registers its lifecycle callback."""

    _registered: ClassVar[bool] = False


class WrongAssociationBugKit(DirKit):
    """Bug (in the kit, as the suite sees it): the association does not describe the
    binding."""

    def bind(self, target: TargetWorkflow) -> Binding[None, DirInfo, None]:
        receiver = self._receiver(target, self.events)
        return Binding(
            association=Association(
                registry=receiver.registry, matches=lambda info: info.directory is None
            ),
            dispatch_state=NotSupported(reason="not the point of this kit"),
        )


class EmptyReasonBugKit(DirKit):
    """Bug (in the kit): a capability declared NotSupported without a reason."""

    def redelivery(self) -> Supported | NotSupported:
        return NotSupported(reason=" ")
