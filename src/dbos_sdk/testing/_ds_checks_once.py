"""The conformance checks of exactly-once execution: the crash window, duplicate
executions, error replay, retries (the bound, conflicts, lost connections)."""

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from dbos_sdk import DBOS, SetWorkflowID
from dbos_sdk._datasource._records import TransactionRetryPolicy
from dbos_sdk.errors import DBOSTransactionRetriesExceededError

from ._common import supported
from ._ds_checks_common import (
    RETURN_ARG,
    ConformanceChecks,
    check,
    ending,
    insert_arg,
    new_name,
    run_crash_child,
)
from ._ds_harness import (
    Db,
    Hook,
    Raise,
    Return,
    call,
    commit_in_the_datasource_only,
    define,
    outcome,
    resumed_call,
    workflow,
)
from ._ds_kit import AnyDataSourceKit


class ExactlyOnceChecks(ConformanceChecks):
    """Checks that a transaction step takes effect exactly once."""

    def test_writes_and_checkpoint_commit_together_and_the_step_replays(
        self, kit: AnyDataSourceKit
    ) -> None:
        """A transaction step's write and its completion checkpoint (workflow ID, step 1, output,
        serialization) commit together; the system database records the step; calling the
        workflow ID again replays it without running the body."""
        name = new_name()
        ds = kit.make_datasource(name)
        runs: list[Any] = []
        insert = define(
            kit,
            name,
            "insert",
            [Hook(runs.append), insert_arg(kit, ds), Return(lambda _r, a: a[0] + "!")],
        )
        wf = workflow(kit, "wf_insert", insert)
        DBOS.launch()
        for _ in range(2):
            with SetWorkflowID("w1"):
                got = call(kit, wf, "a")
            check(got == "a!", f"the workflow returned {got!r}, not the transaction's 'a!'")
        check(runs == [("a",)], f"one workflow ID called twice ran the body {len(runs)} times")
        check(kit.committed_items() == ["a"], f"committed rows: {kit.committed_items()}")
        cps = kit.committed_checkpoints()
        check(len(cps) == 1, f"expected one completion checkpoint, found {cps}")
        cp = cps[0]
        check(
            (cp.workflow_id, cp.step_id, cp.error, cp.serialization) == ("w1", 1, None, "pickle")
            and cp.output is not None,
            f"the checkpoint should record step 1 of 'w1' with its output (pickle): {cp}",
        )
        steps = [(s.function_id, s.function_name, s.output) for s in DBOS.get_workflow_steps("w1")]
        check(steps == [(1, "insert", "a!")], f"the system database recorded {steps}")

    @pytest.mark.parametrize("how", ["success", "error"])
    def test_sigkill_between_the_datasource_commit_and_the_step_record_recovery_replays_the_checkpoint(
        self, kit: AnyDataSourceKit, how: str
    ) -> None:
        """Exactly once across the crash window: a real process is SIGKILLed after the
        datasource commit and before the system database records the step; a fresh
        process recovers the workflow, which returns (or raises) the recorded outcome from
        the checkpoint without running the body again; the row exists once."""
        directory = Path(kit.scratch.directory)
        marker = directory / "crash-runs.txt"
        args: dict[str, Any] = {
            "factory": type(self).kit_factory,
            "scratch": {"directory": kit.scratch.directory, "token": kit.scratch.token},
            "sys_path": [entry or os.getcwd() for entry in sys.path],
            "sysdb": f"sqlite:///{directory}/crash-sys.sqlite",
            "marker": str(marker),
            "ending": how,
            "wfid": "crash-wf",
            "token": "tok",
        }
        crashed = run_crash_child({**args, "phase": "crash"})
        check(
            crashed.returncode == -signal.SIGKILL,
            f"the crash child was to die by SIGKILL when recording the step; it exited with "
            f"{crashed.returncode}:\n{crashed.stdout}\n{crashed.stderr[-3000:]}",
        )
        check(marker.read_text() == "tok\n", "the body was to run once before the kill")
        committed = kit.committed_items()
        want = ["tok"] if how == "success" else []
        check(committed == want, f"before recovery, committed rows {committed}; expected {want}")
        recovered = run_crash_child({**args, "phase": "recover"})
        check(
            recovered.returncode == 0,
            f"the recovery child failed ({recovered.returncode}):\n{recovered.stdout}\n"
            f"{recovered.stderr[-3000:]}",
        )
        result = json.loads(recovered.stdout.strip().splitlines()[-1])
        expected = (
            {"value": "done tok"} if how == "success" else {"error": "ValueError: failed tok"}
        )
        check(result == expected, f"recovery returned {result}; the recorded outcome is {expected}")
        check(marker.read_text() == "tok\n", "recovery ran the body again")
        check(kit.committed_items() == want, f"after recovery, rows {kit.committed_items()}")
        keys = [(cp.workflow_id, cp.step_id) for cp in kit.committed_checkpoints()]
        check(keys == [("crash-wf", 1)], f"checkpoints after recovery: {keys}")

    @pytest.mark.parametrize("how", ["success", "error"])
    def test_duplicate_execution_rolls_back_and_returns_the_winners_outcome(
        self, kit: AnyDataSourceKit, how: str
    ) -> None:
        """When another execution of the same step committed its checkpoint first, this
        execution's transaction meets the checkpoint key, rolls its writes back, and returns
        (or raises) the winner's outcome, which the system database records."""
        name = new_name()
        ds = kit.make_datasource(name)
        runs: list[Any] = []
        tx = define(
            kit,
            name,
            "dup_tx",
            [Hook(runs.append), insert_arg(kit, ds), ending(how)],
        )
        wf = workflow(kit, "wf_dup", tx)
        DBOS.launch()
        # Another execution of step 1 of workflow "dup" commits its checkpoint first ...
        winner = outcome(lambda: commit_in_the_datasource_only(kit, tx, "dup", "winner"))
        # ... then the workflow's own first execution runs step 1 optimistically, meets the
        # checkpoint key, rolls back and returns (or raises) the winner's outcome, which the
        # system database then records as the step's.
        with SetWorkflowID("dup"):
            loser = outcome(lambda: call(kit, wf, "loser"))
        check(runs == [("winner",), ("loser",)], f"body runs: {runs}")
        check(loser == winner, f"the duplicate returned {loser}; the winner's outcome is {winner}")
        [step] = DBOS.get_workflow_steps("dup")
        recorded = step.output if step.error is None else f"ValueError: {step.error}"
        check(recorded == winner[1], f"the step was recorded as {recorded!r}, not {winner[1]!r}")
        if how == "success":
            check(winner == ("value", "from winner"), f"winner: {winner}")
            check(kit.committed_items() == ["winner"], f"rows: {kit.committed_items()}")
        else:
            check(winner == ("error", "ValueError: from winner"), f"winner: {winner}")
            check(kit.committed_items() == [], f"rows: {kit.committed_items()}")
        check(len(kit.committed_checkpoints()) == 1, f"{kit.committed_checkpoints()}")

    @pytest.mark.parametrize("how", ["success", "error"])
    def test_concurrent_duplicate_loses_the_race_and_returns_the_winners_outcome(
        self, kit: AnyDataSourceKit, how: str
    ) -> None:
        """The same race with both transactions open at once: the duplicate wrote, waits, the
        winner commits; the duplicate's commit conflicts, rolls back, returns the winner's
        outcome."""
        config = supported(
            kit, kit.concurrent_write_transactions(), "concurrent write transactions"
        ).config
        name = new_name()
        ds = kit.make_datasource(name)
        runs: list[Any] = []
        loser_wrote, winner_done = threading.Event(), threading.Event()

        def gate(args: tuple[Any, ...]) -> None:
            if args[0] == "loser" and not loser_wrote.is_set():
                loser_wrote.set()
                check(winner_done.wait(20), "the winner did not commit within 20 s")

        tx = define(
            kit,
            name,
            "dup_tx",
            [
                Hook(runs.append),
                insert_arg(kit, ds),
                Hook(gate),
                ending(how),
            ],
            config=config,
        )
        wf = workflow(kit, "wf_dup", tx)
        DBOS.launch()
        got: list[tuple[str, Any]] = []

        def run_loser() -> None:
            with SetWorkflowID("dup"):
                got.append(outcome(lambda: call(kit, wf, "loser")))

        loser = threading.Thread(target=run_loser)
        loser.start()
        check(loser_wrote.wait(20), "the duplicate's transaction did not reach its write")
        winner = outcome(lambda: commit_in_the_datasource_only(kit, tx, "dup", "winner"))
        winner_done.set()
        loser.join(30)
        check(got == [winner], f"the duplicate returned {got}; the winner's outcome is {winner}")
        check(("loser",) in runs and ("winner",) in runs, f"body runs: {runs}")
        want = ["winner"] if how == "success" else []
        check(kit.committed_items() == want, f"rows {kit.committed_items()}, expected {want}")
        check(len(kit.committed_checkpoints()) == 1, f"{kit.committed_checkpoints()}")

    # --- errors and retries ----------------------------------------------------------------

    def test_error_is_recorded_and_replayed_without_rerunning(self, kit: AnyDataSourceKit) -> None:
        """A non-retriable error rolls the writes back, is recorded as the step's checkpoint in
        the datasource, and is raised again on replay -- also by an execution that finds only
        the datasource's checkpoint -- without running the body."""
        name = new_name()
        ds = kit.make_datasource(name)
        runs: list[Any] = []
        fail = define(
            kit,
            name,
            "fail",
            [
                Hook(runs.append),
                insert_arg(kit, ds),
                Raise(lambda a: ValueError(f"bad {a[0]}")),
            ],
        )
        wf = workflow(kit, "wf_fail", fail)
        DBOS.launch()
        for _ in range(2):
            with SetWorkflowID("e1"), pytest.raises(ValueError, match="bad x"):
                call(kit, wf, "x")
        check(runs == [("x",)], f"body runs: {runs}")
        check(kit.committed_items() == [], "the failed transaction's write was committed")
        cps = kit.committed_checkpoints()
        check(
            len(cps) == 1
            and (cps[0].workflow_id, cps[0].step_id, cps[0].output) == ("e1", 1, None)
            and cps[0].error is not None,
            f"the error should be step 1's checkpoint: {cps}",
        )
        # The datasource's checkpoint alone replays it: an execution that may have run the
        # step before (a resumed one) looks the checkpoint up and raises, without running it.
        with pytest.raises(ValueError, match="bad x"):
            resumed_call(kit, fail, "e1", "x")
        check(runs == [("x",)], f"the resumed execution ran the body: {runs}")

    def test_retry_bound_reached_gives_the_named_error_recorded_as_the_outcome(
        self, kit: AnyDataSourceKit
    ) -> None:
        """A transaction failing with a retriable error on every attempt runs exactly
        ``max_attempts`` times, then raises DBOSTransactionRetriesExceededError, which is the
        step's recorded outcome (replayed, not retried)."""
        name = new_name()
        ds = kit.make_datasource(
            name, retry=TransactionRetryPolicy(max_attempts=3, max_elapsed_s=None)
        )
        runs: list[Any] = []
        tx = define(
            kit,
            name,
            "always_retriable",
            [Hook(runs.append), Db(lambda _r, _a: kit.raise_retriable_error(ds))],
        )
        wf = workflow(kit, "wf_always_retriable", tx)
        DBOS.launch()
        with SetWorkflowID("bound"), pytest.raises(DBOSTransactionRetriesExceededError) as caught:
            call(kit, wf, "x")
        check(caught.value.attempts == 3, f"attempts: {caught.value.attempts}, bound 3")
        text = str(caught.value)
        check("retriable" in text and "max_attempts" in text, f"message: {text}")
        check(len(runs) == 3, f"the body ran {len(runs)} times under max_attempts=3")
        # The named error is the step's recorded outcome: replayed, not retried again.
        with SetWorkflowID("bound"), pytest.raises(DBOSTransactionRetriesExceededError):
            call(kit, wf, "x")
        check(len(runs) == 3, f"the replay ran the body again: {len(runs)} runs")

    def test_concurrent_conflicting_transactions_the_loser_is_retried_and_no_update_is_lost(
        self, kit: AnyDataSourceKit
    ) -> None:
        """Two concurrent read-then-write transactions on one row: the loser's retriable
        conflict is retried, it reads the winner's write, both succeed, the counter is 2."""
        case = supported(kit, kit.conflicting_writes(), "conflicting concurrent transactions")
        name = new_name()
        ds = kit.make_datasource(name)
        barrier = threading.Barrier(2, timeout=20)
        attempts: list[str] = []
        lock = threading.Lock()

        def meet(args: tuple[Any, ...]) -> None:
            with lock:
                attempts.append(args[0])
                first = attempts.count(args[0]) == 1
            if first:  # both transactions have read the row before either writes it
                barrier.wait()

        bump = define(
            kit,
            name,
            "bump",
            [
                Db(lambda _r, _a: kit.read_counter(ds)),
                Hook(meet),
                Db(lambda r, _a: kit.write_counter(ds, r[0] + 1)),
                RETURN_ARG,
            ],
            config=case.config,
        )
        wf = workflow(kit, "wf_bump", bump)
        DBOS.launch()
        results: list[tuple[str, Any]] = []

        def run(tag: str) -> None:
            with SetWorkflowID(f"bump-{tag}"):
                results.append(outcome(lambda: call(kit, wf, tag)))

        threads = [threading.Thread(target=run, args=(tag,)) for tag in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        check(
            sorted(results) == [("value", "a"), ("value", "b")],
            f"both transactions should succeed (the loser after a retry): {results}",
        )
        check(
            kit.committed_counter() == 2, f"counter {kit.committed_counter()}: an update was lost"
        )
        if case.total_attempts is not None:
            check(
                len(attempts) == case.total_attempts,
                f"the bodies ran {len(attempts)} times in all, not {case.total_attempts}",
            )
        else:
            check(len(attempts) >= 3, f"the bodies ran {len(attempts)} times: no retry")

    def test_lost_connection_is_retried_on_a_new_one(self, kit: AnyDataSourceKit) -> None:
        """A connection broken mid-transaction is a retriable error: the transaction runs again
        on a new connection, and its write and checkpoint commit once."""
        supported(kit, kit.connection_loss(), "losing a connection on purpose")
        name = new_name()
        ds = kit.make_datasource(name)
        runs: list[Any] = []

        def lose_first(_r: list[Any], _a: tuple[Any, ...]) -> Any:
            return kit.lose_connection(ds) if len(runs) == 1 else None

        tx = define(
            kit,
            name,
            "lose_connection",
            [
                Hook(runs.append),
                insert_arg(kit, ds),
                Db(lose_first),  # the first attempt's connection breaks mid-transaction
                RETURN_ARG,
            ],
        )
        wf = workflow(kit, "wf_lose_connection", tx)
        DBOS.launch()
        with SetWorkflowID("lost"):
            got = call(kit, wf, "kept")
        check(got == "kept", f"the retried transaction returned {got!r}")
        check(len(runs) == 2, f"the body ran {len(runs)} times; once, then once retried")
        check(kit.committed_items() == ["kept"], f"rows: {kit.committed_items()}")
        check(len(kit.committed_checkpoints()) == 1, f"{kit.committed_checkpoints()}")
