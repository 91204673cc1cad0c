"""ReceiverConformance: the checks every event receiver must pass, as pytest tests.

Subclass :class:`ReceiverConformance` in a test module and name your kit factory::

    class TestMyReceiver(ReceiverConformance):
        kit_factory = "my_kits:MyReceiverKit"

Each ``test_*`` method is one check, named after what it proves.
"""

import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import attrs
import pytest

from dbos_sdk import DBOS, DBOSConfig, DBOSExternalState, DBOSLaunchError, DBOSNotLaunchedError
from dbos_sdk.testing._common import require_server, supported
from dbos_sdk.testing._ds_kit import KitScratch
from dbos_sdk.testing._receiver_child import CrashPoint, spawned
from dbos_sdk.testing._receiver_session import (
    PENDING_ID,
    LifecycleLog,
    Sentinel,
    Session,
    build_receiver_kit,
    check,
    open_session,
    register_datasource_probe,
    watch_receiver_hooks,
)
from dbos_sdk.testing._receivers import (
    Association,
    Binding,
    DispatchStateRef,
    ReceiverKit,
    TargetWorkflow,
)

C = TypeVar("C")
M = TypeVar("M")
P = TypeVar("P")
T = TypeVar("T")

_STALE = "stale-value-written-by-the-conformance-suite"


def _key(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def _state_ref(kit: ReceiverKit, binding: Binding[Any, Any, Any]) -> DispatchStateRef:
    return supported(kit, binding.dispatch_state, "dispatch state")


def _version(state: DBOSExternalState) -> tuple[float | None, int | None]:
    return state.update_time, state.update_seq


def _pairs(
    new: DBOSExternalState, old: DBOSExternalState
) -> tuple[tuple[float | None, float | None], ...]:
    return (new.update_time, old.update_time), (new.update_seq, old.update_seq)


def _not_older(new: DBOSExternalState, old: DBOSExternalState) -> bool:
    """No version of ``new`` is missing or lower than the same version of ``old``."""
    return all(o is None or (n is not None and n >= o) for n, o in _pairs(new, old))


def _moved_forward(new: DBOSExternalState, old: DBOSExternalState) -> bool:
    """``new`` is not older than ``old`` and one of its versions grew."""
    grew = any(n is not None and o is not None and n > o for n, o in _pairs(new, old))
    return grew and _not_older(new, old)


def _check_versioned(state: DBOSExternalState) -> None:
    check(
        _version(state) != (None, None),
        f"the dispatch state {state} has no update_time or update_seq: unversioned writes "
        "are last-write-wins, so a lagging process would move it back",
    )


def _check_association(assoc: Association[C, M, P], target: TargetWorkflow, kit_name: str) -> None:
    found = DBOS.get_associated_info(assoc.registry)
    mine = [r for r in found if r.method_reg.registered_function is target.func]
    check(
        len(mine) == 1,
        f"DBOS.get_associated_info({assoc.registry!r}) has {len(mine)} entries for the bound "
        f"workflow {target.name!r} (expected one); it has {[r.method_reg for r in found]}",
    )
    (reg,) = mine
    check(
        reg.method_reg.kind == "workflow" and reg.method_reg.name == target.name,
        f"the association describes {reg.method_reg!r}, not workflow {target.name!r}",
    )
    info_type = type(assoc.registry.method_info())
    check(
        type(reg.method_config) is info_type,
        f"the method info is a {type(reg.method_config).__name__}, not the registry's own "
        f"{info_type.__name__}",
    )
    check(
        assoc.matches(reg.method_config),
        f"{kit_name}'s Association.matches rejects what get_associated_info returned for the "
        f"bound workflow: {reg.method_config!r}",
    )
    param_type = type(assoc.registry.param_info())
    for param in reg.param_config:
        check(
            type(param.param_config) is param_type,
            f"the info of parameter {param.name!r} is a {type(param.param_config).__name__}, "
            f"not the registry's own {param_type.__name__}",
        )
    if reg.class_config is not None:
        class_type = type(assoc.registry.class_info())
        check(
            type(reg.class_config) is class_type,
            f"the class info is a {type(reg.class_config).__name__}, not {class_type.__name__}",
        )
    for name in {target.name, target.func.__name__}:
        check(
            list(DBOS.get_associated_info(assoc.registry, func_name=name)) == [reg],
            f"get_associated_info(..., func_name={name!r}) does not find the bound workflow",
        )


class ReceiverConformance:
    """The conformance suite of an event receiver, against its real server.

    Subclass it as ``Test<Something>`` in a test module and set :attr:`kit_factory`;
    pytest then runs every check against the kit's receiver::

        class TestMyReceiver(ReceiverConformance):
            kit_factory = "my_kits:MyReceiverKit"

    Each check gets a fresh scratch space (the kit's ``create_scratch``), its own system
    database (SQLite in the scratch directory; override :meth:`dbos_config` for another)
    and a registry whose registrations are forgotten afterwards. A capability the kit
    declares NotSupported skips its check with the kit's reason; when the kit's server is
    unreachable every check is skipped with the reason, or fails when the ``CI``
    environment variable is set or pytest runs with ``--dbos-require-servers``.
    """

    kit_factory: ClassVar[str] = ""
    """``"module:attribute"`` of the kit factory: a :class:`ReceiverKit` subclass, or a
    function taking a :class:`KitScratch` and returning a kit. It must be importable in a
    child process given the test process's ``sys.path`` (the crash checks rebuild the kit
    there, importing this module first)."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.dbos_conformance]

    @pytest.fixture
    def kit(self, request: pytest.FixtureRequest, tmp_path: Path) -> Generator[ReceiverKit]:
        """The kit on a fresh scratch space (its resources dropped afterwards)."""
        path = type(self).kit_factory
        if not path:
            raise TypeError(
                f"{type(self).__name__} runs the receiver conformance suite but names no kit: "
                "set kit_factory = 'module:attribute' on the class."
            )
        scratch = KitScratch(directory=str(tmp_path), token=f"k{uuid.uuid4().hex[:12]}")
        kit = build_receiver_kit(path, scratch)
        require_server(request, path, kit.unreachable)
        kit.create_scratch()
        try:
            yield kit
        finally:
            kit.drop_scratch()

    def dbos_config(self, directory: Path) -> DBOSConfig:
        """The DBOS configuration of each check, given the scratch directory (the crash
        checks' child processes use its name, system database URL, executor ID, Postgres
        schema and application version)."""
        return DBOSConfig(
            "receiver-conformance",
            system_database_url=f"sqlite:///{directory}/conformance.sqlite",
            executor_id="receiver-conformance",
        )

    def _config(self, kit: ReceiverKit) -> DBOSConfig:
        return self.dbos_config(Path(kit.scratch.directory))

    # --- lifecycle ---------------------------------------------------------------------

    def _lifecycle(self, kit: ReceiverKit) -> tuple[LifecycleLog, Session]:
        """Launch and shut down once with the receiver between two sentinel callbacks, a
        probe datasource and a workflow left PENDING for recovery; record everything."""
        log = LifecycleLog()
        with open_session(kit, self._config(kit)) as s:
            s.plant_pending_workflow()

            def at_initialize() -> None:
                status = DBOS.get_workflow_status(PENDING_ID)
                log.facts["recovery_attempts"] = status.recovery_attempts if status else None

            register_datasource_probe(log)
            DBOS.register_lifecycle_callback(Sentinel("first", log))
            s.bind()
            watch_receiver_hooks(s.hooks, log, at_initialize)
            DBOS.register_lifecycle_callback(Sentinel("last", log))
            s.launch()
            s.shutdown()
        return log, s

    def test_lifecycle_initialize_runs_after_datasources_and_recovery_in_registration_order(
        self, kit: ReceiverKit
    ) -> None:
        """The receiver's callback is registered by its bind and initialized by
        DBOS.launch() after datasources were initialized and recovery began, after the
        callbacks registered before it and before those registered after it."""
        log, _ = self._lifecycle(kit)
        log.before("datasource initialize", "receiver initialize", "datasources first")
        log.before("first initialize", "receiver initialize", "registration order")
        log.before("receiver initialized", "last initialize", "registration order")
        attempts = log.facts.get("recovery_attempts")
        check(
            isinstance(attempts, int) and attempts >= 1,
            "recovery had not begun when the receiver's initialize ran (the pending "
            f"workflow's recovery attempts: {attempts})",
        )

    def test_lifecycle_endpoints_are_logged_after_every_initialize_naming_the_workflow(
        self, kit: ReceiverKit
    ) -> None:
        """log_registered_endpoints runs once every callback was initialized, and logs a
        line (at INFO or above) naming the workflow it serves."""
        log, s = self._lifecycle(kit)
        log.before("last initialize", "receiver endpoints", "endpoints after every initialize")
        named = [line for line in log.endpoint_lines if s.target.name in line]
        check(
            bool(named),
            f"log_registered_endpoints logged {log.endpoint_lines}: no line names the bound "
            f"workflow {s.target.name!r}",
        )

    def test_lifecycle_destroy_runs_first_at_shutdown_while_workflows_still_run(
        self, kit: ReceiverKit
    ) -> None:
        """DBOS.shutdown() destroys the receiver in reverse registration order, before
        datasources, while workflows can still be started and finish; destroy raises
        nothing."""
        log, _ = self._lifecycle(kit)
        log.before("last destroy", "receiver destroy", "reverse registration order")
        log.before("receiver destroyed", "first destroy", "reverse registration order")
        log.before("receiver destroyed", "datasource destroy", "receivers stop first")
        check("destroy_error" not in log.facts, f"destroy raised {log.facts.get('destroy_error')}")
        ran = log.facts.get("workflow_after_destroy")
        check(
            ran == "ran",
            f"a workflow started right after the receiver's destroy did not run: {ran}",
        )

    def test_bad_configuration_fails_launch_naming_receiver_workflow_and_setting(
        self, kit: ReceiverKit
    ) -> None:
        """A receiver whose initialize fails makes DBOS.launch() raise DBOSLaunchError
        naming the receiver, the workflow and the setting, and DBOS stays down."""
        with open_session(kit, self._config(kit)) as s:
            answer = s.registering(lambda: kit.bind_misconfigured(s.target), require=False)
            wrong = supported(kit, answer, "a launch-time misconfiguration")
            s.require_hooks()
            try:
                s.launch()
            except DBOSLaunchError as exc:
                message = str(exc)
            else:
                raise AssertionError("DBOS.launch() succeeded with a misconfigured receiver")
            receivers = [h.name for h in s.hooks]
            check(
                any(name in message for name in receivers),
                f"the launch error does not name the receiver ({receivers}): {message}",
            )
            check(
                s.target.name in message,
                f"the launch error does not name the workflow {s.target.name!r}: {message}",
            )
            for part in wrong.mentions:
                check(part in message, f"the launch error does not mention {part!r}: {message}")
            try:
                DBOS.list_workflows()
            except DBOSNotLaunchedError:
                pass
            else:
                raise AssertionError("DBOS is launched after a failed launch")

    # --- associations --------------------------------------------------------------------

    def test_association_round_trips_through_get_associated_info_with_its_own_info_types(
        self, kit: ReceiverKit
    ) -> None:
        """What the receiver associated with the workflow comes back from
        DBOS.get_associated_info(registry): one entry for the workflow, with the registry's
        own info types, describing the binding, also when filtered by function name."""
        with open_session(kit, self._config(kit)) as s:
            binding = s.bind()
            _check_association(binding.association, s.target, type(kit).__name__)

    # --- events and workflows ------------------------------------------------------------

    def test_each_event_starts_one_workflow_whose_id_derives_from_the_event(
        self, kit: ReceiverKit
    ) -> None:
        """Every delivered event starts exactly one workflow, under the ID derived from
        the event's identity; different events get different IDs."""
        with open_session(kit, self._config(kit)) as s:
            s.bind()
            s.launch()
            events = [s.deliver(_key("first")), s.deliver(_key("second"))]
            s.wait_done(events)
            s.settle()
            s.check_one_workflow_per_event(events)
            check(events[0].workflow_id != events[1].workflow_id, f"one ID for two {events}")

    def test_a_redelivered_event_starts_no_second_workflow(self, kit: ReceiverKit) -> None:
        """An event offered again to the running receiver reaches it (it starts the same
        workflow ID again) and starts nothing new: the workflow runs once."""
        supported(kit, kit.redelivery(), "offering a delivered event again")
        with open_session(kit, self._config(kit)) as s:
            s.bind()
            s.launch()
            event = s.deliver(_key("redelivered"))
            s.wait_done([event])
            s.check_one_workflow_per_event([event])
            kit.redeliver(event)
            s.wait_started(event, 2, "the redelivered event to reach the receiver")
            s.settle()
            s.check_one_workflow_per_event([event])

    def test_a_relaunch_in_the_same_process_initializes_the_receiver_again(
        self, kit: ReceiverKit
    ) -> None:
        """After DBOS.shutdown() and a new DBOS.launch() with the same registrations, the
        receiver serves again, and what it dispatched before starts nothing new."""
        with open_session(kit, self._config(kit)) as s:
            s.bind()
            s.launch()
            before = s.deliver(_key("before"))
            s.wait_done([before])
            s.shutdown()
            s.launch()
            after = s.deliver(_key("after"))
            s.wait_done([before, after])
            s.settle()
            s.check_one_workflow_per_event([before, after])

    def test_events_delivered_while_down_start_one_workflow_each_after_relaunch(
        self, kit: ReceiverKit
    ) -> None:
        """An event delivered while DBOS is shut down is dispatched once at the next
        launch (and not before it); earlier events start nothing new."""
        supported(kit, kit.delivery_while_down(), "delivering events while DBOS is down")
        with open_session(kit, self._config(kit)) as s:
            s.bind()
            s.launch()
            first = s.deliver(_key("up"))
            s.wait_done([first])
            s.shutdown()
            down = s.deliver(_key("down"))
            relaunched = s.launch()
            later = s.deliver(_key("later"))
            s.wait_done([first, down, later])
            s.settle()
            s.check_one_workflow_per_event([first, down, later])
            status = DBOS.get_workflow_status(down.workflow_id)
            check(
                status is not None and status.created_at >= relaunched,
                f"the workflow of the event delivered while down was created at "
                f"{status and status.created_at}, before the relaunch at {relaunched}",
            )

    # --- crashes -------------------------------------------------------------------------

    def _crash(self, kit: ReceiverKit, when: CrashPoint) -> None:
        supported(kit, kit.crash_restart(), "running in a child process SIGKILLed mid-event")
        config = self._config(kit)
        with open_session(kit, config) as s:
            s.bind()  # this process's registrations, launched after the child died
            with spawned(type(self).kit_factory, kit, config, when) as proc:
                proc.expect("launched", 60)
                first = s.deliver(_key("before-crash"))
                proc.expect(f"started {first.workflow_id}", kit.dispatch_timeout)
                proc.send("arm")
                proc.expect("armed", 10)
                delivered = s.deliver(_key("crash"))
                crashed = proc.dying(kit.dispatch_timeout)
            if kit.unsolicited_events is None:
                check(
                    crashed == delivered,
                    f"the child died starting {crashed}, but the event delivered was {delivered}",
                )
            relaunched = s.launch()
            s.wait_started(
                crashed,
                1,
                "the event interrupted by the crash to be offered again after the restart"
                + (
                    " (was it acknowledged before its workflow started?)"
                    if when == "before"
                    else ""
                ),
            )
            s.wait_done([first, crashed])
            s.settle()
            s.check_one_workflow_per_event([first, crashed])
            status = DBOS.get_workflow_status(crashed.workflow_id)
            assert status is not None
            if when == "after":
                check(
                    status.created_at < relaunched,
                    "the workflow recorded before the crash was not the one that finished",
                )
            else:
                check(
                    status.created_at >= relaunched,
                    "the workflow of the event was recorded before the crash, though the "
                    "child died before starting it",
                )

    def test_redelivery_after_sigkill_between_workflow_start_and_ack_starts_nothing_new(
        self, kit: ReceiverKit
    ) -> None:
        """A child process SIGKILLed right after the receiver durably started an event's
        workflow (before it could acknowledge the event): after a restart the event is
        offered again, and the workflow recorded before the crash is the only one and
        finishes."""
        self._crash(kit, "after")

    def test_an_event_whose_start_was_cut_by_sigkill_is_started_after_restart(
        self, kit: ReceiverKit
    ) -> None:
        """A child process SIGKILLed right before the receiver started an event's
        workflow: the event was not acknowledged (nor its dispatch state advanced), so
        after a restart it is offered again and starts its one workflow."""
        self._crash(kit, "before")

    # --- dispatch state ------------------------------------------------------------------

    def test_dispatch_state_is_versioned_and_moves_forward_with_each_event(
        self, kit: ReceiverKit
    ) -> None:
        """After each event the receiver's dispatch state carries a version
        (update_time or update_seq) that grew and never fell, so a lagging process cannot
        move it back."""
        with open_session(kit, self._config(kit)) as s:
            ref = _state_ref(kit, s.bind())
            s.launch()
            first = s.deliver(_key("first"))
            s.wait_done([first])
            old = s.wait_state(ref, lambda _: True, f"a dispatch state at {ref}")
            _check_versioned(old)
            second = s.deliver(_key("second"))
            s.wait_done([second])
            s.wait_state(
                ref,
                lambda new: _moved_forward(new, old),
                f"the dispatch state to move forward from {old} after event {second.key!r}",
            )

    def test_a_lower_version_written_under_the_receivers_service_changes_nothing(
        self, kit: ReceiverKit
    ) -> None:
        """DBOS.upsert_event_dispatch_state under the receiver's service, workflow and key,
        with a lower or equal version (as a lagging process would write), returns the
        stored state and changes nothing; the receiver then resumes from its own state."""
        with open_session(kit, self._config(kit)) as s:
            ref = _state_ref(kit, s.bind())
            s.launch()
            events = [s.deliver(_key("one")), s.deliver(_key("two"))]
            s.wait_done(events)
            s.settle()
            stored = s.wait_state(ref, lambda _: True, f"a dispatch state at {ref}")
            _check_versioned(stored)
            t, seq = _version(stored)
            lower = attrs.evolve(
                stored,
                value=_STALE,
                update_time=None if t is None else t - 1,
                update_seq=None if seq is None else seq - 1,
            )
            for write in (lower, attrs.evolve(stored, value=_STALE)):
                got = DBOS.upsert_event_dispatch_state(write)
                check(
                    got.value != _STALE and _not_older(got, stored),
                    f"upserting {write} over {stored} returned {got}: the stored state "
                    "should have won",
                )
            now = s.state(ref)
            check(now is not None and now.value != _STALE, f"the stale write was stored: {now}")
            s.shutdown()
            s.launch()
            later = s.deliver(_key("three"))
            s.wait_done([*events, later])
            s.settle()
            s.check_one_workflow_per_event([*events, later])
