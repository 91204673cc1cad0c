"""Every event receiver of this repository passes the receiver conformance suite
(dbos_sdk.testing.ReceiverConformance) against its real server, and the suite catches a
receiver's bugs.

The kits are in tests/children/conf_kits.py (the suite's crash checks rebuild them in
child processes). A server that is not reachable skips its receiver's checks with the
reason, or fails them when CI is set. ``DirReceiver`` (tests/children/conf_dir.py) is a
receiver outside this repository's packages: correct, it passes the suite; with one bug
switched on, the check that names the bug fails.
"""

import uuid
from pathlib import Path

import pytest

from children.conf_dir import (
    AckFirstBugKit,
    DirKit,
    EmptyReasonBugKit,
    QuietBugKit,
    RandomIdBugKit,
    UnregisteredBugKit,
    UnversionedStateBugKit,
    WrongAssociationBugKit,
)
from dbos_sdk.testing import KitScratch, ReceiverConformance


class TestScheduler(ReceiverConformance):
    kit_factory = "children.conf_kits:SchedulerKit"


class TestPgNotify(ReceiverConformance):
    kit_factory = "children.conf_kits:PgNotifyKit"


class TestAsgi(ReceiverConformance):
    kit_factory = "children.conf_kits:AsgiKit"


class TestNats(ReceiverConformance):
    kit_factory = "children.conf_kits:NatsKit"


class TestNatsStreamSeq(ReceiverConformance):
    kit_factory = "children.conf_kits:NatsStreamSeqKit"


class TestRabbitMQ(ReceiverConformance):
    kit_factory = "children.conf_kits:RabbitMQKit"


class TestDirReceiver(ReceiverConformance):
    kit_factory = "children.conf_dir:DirKit"


@pytest.mark.parametrize(
    ("kit_class", "check", "message"),
    [
        pytest.param(
            RandomIdBugKit,
            "test_each_event_starts_one_workflow_whose_id_derives_from_the_event",
            "but the ID derived from the event's identity is",
            id="random-workflow-ids",
        ),
        pytest.param(
            AckFirstBugKit,
            "test_an_event_whose_start_was_cut_by_sigkill_is_started_after_restart",
            "was it acknowledged before its workflow started",
            id="ack-before-start",
        ),
        pytest.param(
            UnversionedStateBugKit,
            "test_dispatch_state_is_versioned_and_moves_forward_with_each_event",
            "has no update_time or update_seq",
            id="unversioned-dispatch-state",
        ),
        pytest.param(
            QuietBugKit,
            "test_lifecycle_endpoints_are_logged_after_every_initialize_naming_the_workflow",
            "no line names the bound workflow",
            id="no-endpoint-log",
        ),
        pytest.param(
            UnregisteredBugKit,
            "test_lifecycle_initialize_runs_after_datasources_and_recovery_in_registration_order",
            "registered no lifecycle callback",
            id="no-lifecycle-callback",
        ),
        pytest.param(
            WrongAssociationBugKit,
            "test_association_round_trips_through_get_associated_info_with_its_own_info_types",
            "Association.matches rejects",
            id="association-not-found-back",
        ),
        pytest.param(
            EmptyReasonBugKit,
            "test_a_redelivered_event_starts_no_second_workflow",
            "NotSupported, without a reason",
            id="unsupported-without-a-reason",
        ),
    ],
)
def test_the_suite_fails_a_receiver_with_a_bug(
    kit_class: type[DirKit], check: str, message: str, tmp_path: Path
) -> None:
    suite = type(
        "BuggySuite",
        (ReceiverConformance,),
        {"kit_factory": f"children.conf_dir:{kit_class.__name__}"},
    )()
    kit = kit_class(KitScratch(directory=str(tmp_path), token=f"k{uuid.uuid4().hex[:12]}"))
    kit.create_scratch()
    with pytest.raises(AssertionError, match=message):
        getattr(suite, check)(kit)
