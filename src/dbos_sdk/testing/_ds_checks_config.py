"""The conformance checks of configs and lifecycle: read-only, transaction settings,
outside a workflow, the client, launch and shutdown, the checkpoint-table check."""

from typing import Any

import pytest

from dbos_sdk import DBOS
from dbos_sdk.errors import (
    DBOSCheckpointSchemaError,
    DBOSNotInTransactionError,
    DBOSNotLaunchedError,
)

from ._common import supported
from ._ds_checks_common import (
    RETURN_ARG,
    ConformanceChecks,
    check,
    eventually,
    insert_arg,
    new_name,
)
from ._ds_harness import Db, Hook, Return, call, define, sequence_workflow, workflow
from ._ds_kit import AnyDataSourceKit


class ConfigAndLifecycleChecks(ConformanceChecks):
    """Checks that configs are applied and the datasource lives between launch and shutdown."""

    def test_a_write_in_a_read_only_transaction_is_rejected_not_retried_not_checkpointed(
        self, kit: AnyDataSourceKit
    ) -> None:
        """The read-only config is enforced by the database (a write is rejected, and not
        retried); read-only transactions read, and write no checkpoint, failed or not."""
        name = new_name()
        ds = kit.make_datasource(name)
        runs: list[Any] = []
        read_only = kit.read_only_config()
        write = define(
            kit,
            name,
            "ro_write",
            [Hook(runs.append), insert_arg(kit, ds)],
            config=read_only,
        )
        count = define(
            kit,
            name,
            "ro_count",
            [Db(lambda _r, _a: kit.count_items(ds)), Return(lambda r, _a: r[0])],
            config=read_only,
        )
        wf_write, wf_count = (
            workflow(kit, "wf_ro_write", write),
            workflow(kit, "wf_ro_count", count),
        )
        DBOS.launch()
        with pytest.raises(Exception) as caught:
            call(kit, wf_write, "x")
        check(
            kit.is_read_only_violation(caught.value),
            f"the write raised {caught.value!r}, not the database's read-only rejection",
        )
        check(runs == [("x",)], f"the rejected write was retried: {runs}")
        got = call(kit, wf_count)
        check(got == 0, f"a read-only read returned {got!r}")
        check(kit.committed_items() == [], f"rows: {kit.committed_items()}")
        check(
            kit.committed_checkpoints() == [],
            f"read-only transactions wrote checkpoints: {kit.committed_checkpoints()}",
        )

    def test_transaction_settings_are_applied_and_do_not_leak_to_the_next_transaction(
        self, kit: AnyDataSourceKit
    ) -> None:
        """Each settings case (isolation level, read-only, begin mode, default) is what the
        database reports inside the transaction, outside a workflow and as workflow steps,
        whatever the previous transaction on a pooled connection used."""
        cases = list(supported(kit, kit.settings_cases(), "transaction settings"))
        check(len(cases) > 0, f"{type(kit).__name__}.settings_cases() is empty")
        name = new_name()
        ds = kit.make_datasource(name)
        probes = [
            define(
                kit,
                name,
                f"probe_{i}",
                [Db(lambda _r, _a: kit.read_settings(ds)), Return(lambda r, _a: r[0])],
                config=case.config,
            )
            for i, case in enumerate(cases)
        ]
        wf = sequence_workflow(kit, "wf_probe", probes)
        DBOS.launch()
        order = list(range(len(cases)))
        for i in [*order, *reversed(order)]:  # each setting, then each again after another
            got = call(kit, probes[i])
            check(
                got == cases[i].expected,
                f"under {cases[i].label!r} the transaction saw {got!r}, not {cases[i].expected!r}",
            )
        in_workflow = call(kit, wf)
        want = [case.expected for case in cases]
        check(in_workflow == want, f"as workflow steps the settings read {in_workflow}, not {want}")

    # --- outside a workflow, the client ----------------------------------------------------

    def test_outside_a_workflow_a_transaction_runs_once_unrecorded(
        self, kit: AnyDataSourceKit
    ) -> None:
        """Called outside a workflow, a transaction runs once as a plain transaction: no
        checkpoint, no workflow recorded."""
        name = new_name()
        ds = kit.make_datasource(name)
        runs: list[Any] = []
        insert = define(
            kit,
            name,
            "insert",
            [Hook(runs.append), insert_arg(kit, ds), RETURN_ARG],
        )
        DBOS.launch()
        got = call(kit, insert, "plain")
        check(got == "plain", f"returned {got!r}")
        check(runs == [("plain",)], f"body runs: {runs}")
        check(kit.committed_items() == ["plain"], f"rows: {kit.committed_items()}")
        check(kit.committed_checkpoints() == [], f"checkpoints: {kit.committed_checkpoints()}")
        check(DBOS.list_workflows() == [], "a transaction outside a workflow recorded a workflow")

    def test_client_outside_a_transaction_raises_a_named_error(self, kit: AnyDataSourceKit) -> None:
        """``client`` read outside one of the datasource's transactions (before launch, after
        launch, after a transaction ended) raises DBOSNotInTransactionError naming it."""
        name = new_name()
        ds = kit.make_datasource(name)
        insert = define(kit, name, "insert", [insert_arg(kit, ds), RETURN_ARG])
        for when in ("before launch", "after launch", "after a transaction"):
            if when == "after launch":
                DBOS.launch()
            elif when == "after a transaction":
                call(kit, insert, "x")
            with pytest.raises(DBOSNotInTransactionError) as caught:
                _ = ds.client
            check(name in str(caught.value), f"{when}: the message does not name {name!r}")

    # --- lifecycle and schema --------------------------------------------------------------

    def test_transactions_run_between_launch_and_shutdown_and_again_after_a_relaunch(
        self, kit: AnyDataSourceKit
    ) -> None:
        """Before launch and after shutdown a transaction raises DBOSNotLaunchedError; the same
        datasource serves again after a relaunch in the same process."""
        name = new_name()
        ds = kit.make_datasource(name)
        insert = define(kit, name, "insert", [insert_arg(kit, ds), RETURN_ARG])
        with pytest.raises(DBOSNotLaunchedError):
            call(kit, insert, "before launch")
        DBOS.launch()
        check(call(kit, insert, "first") == "first", "the first launch did not serve")
        DBOS.shutdown()
        with pytest.raises(DBOSNotLaunchedError):
            call(kit, insert, "after shutdown")
        DBOS.launch()
        check(call(kit, insert, "again") == "again", "the relaunch did not serve")
        check(kit.committed_items() == ["again", "first"], f"rows: {kit.committed_items()}")

    def test_launch_opens_connections_and_shutdown_closes_every_one(
        self, kit: AnyDataSourceKit
    ) -> None:
        """initialize() connects at launch (so a bad database fails launch), and destroy() closes
        every connection the datasource opened, at each shutdown, across a relaunch."""
        name = new_name()
        ds = kit.make_datasource(name)
        before = supported(kit, kit.open_connections(ds), "counting its connections")
        check(before == 0, f"{before} connections open before launch")
        insert = define(kit, name, "insert", [insert_arg(kit, ds), RETURN_ARG])
        for round_ in ("launch", "relaunch"):
            DBOS.launch()
            opened = kit.open_connections(ds)
            check(
                isinstance(opened, int) and opened > 0,
                f"after {round_}, initialize() had opened no connection",
            )
            call(kit, insert, round_)
            DBOS.shutdown()
            check(
                eventually(lambda: kit.open_connections(ds) == 0),
                f"after shutdown {kit.open_connections(ds)} connections are still open",
            )

    def test_missing_checkpoint_table_fails_launch_naming_the_table_and_the_fix(
        self, kit: AnyDataSourceKit
    ) -> None:
        """With its checkpoint table missing and creating it turned off, launch fails with
        DBOSCheckpointSchemaError naming the table and the fix; after
        install_checkpoint_schema() the datasource launches and checkpoints."""
        name = new_name()
        ds = kit.make_datasource(name, create_checkpoint_schema=False)
        with pytest.raises(DBOSCheckpointSchemaError) as caught:
            DBOS.launch()
        message = str(caught.value)
        for mention in kit.schema_error_mentions():
            check(mention in message, f"the launch error does not name {mention!r}: {message}")
        kit.install_checkpoint_schema(ds)
        insert = define(
            kit,
            name,
            "insert_after_install",
            [insert_arg(kit, ds), RETURN_ARG],
        )
        wf = workflow(kit, "wf_after_install", insert)
        DBOS.launch()
        check(
            call(kit, wf, "ok") == "ok", "after install_checkpoint_schema the launch did not serve"
        )
        check(len(kit.committed_checkpoints()) == 1, f"{kit.committed_checkpoints()}")
