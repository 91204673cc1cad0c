"""The buffer of held step records (dbos_sdk._sysdb._held): what it hands to the workflow's
next write, what its flusher writes and when, and what it does when a write fails. Its use
by the Postgres system database is tested end to end in test_datasource_behaviour.py."""

import threading
import time
from collections.abc import Sequence

import pytest

from dbos_sdk._sysdb import _held
from dbos_sdk._sysdb._held import HeldSteps
from dbos_sdk._sysdb._rows import StepRow


def row(step_id: int) -> StepRow:
    return StepRow(step_id, f"s{step_id}", None, None, None, "pickle", 0, 0)


class Store:
    """Where the flusher's writes go (failing while ``fail`` is set)."""

    def __init__(self) -> None:
        self.written: list[tuple[str, int]] = []
        self.fail = False
        self.wrote = threading.Event()

    def write(self, pairs: Sequence[tuple[str, StepRow]]) -> None:
        if self.fail:
            raise ConnectionError("server gone")
        self.written += [(wfid, r.function_id) for wfid, r in pairs]
        self.wrote.set()


def test_the_next_write_takes_the_held_rows_in_order_and_reads_see_them_meanwhile() -> None:
    store = Store()
    held = HeldSteps(store.write, hold_s=60)
    assert held.take("a") == []
    assert held.hold("a", row(1)) and held.hold("a", row(2)) and held.hold("b", row(1))
    assert [r.function_id for r in held.peek("a")] == [1, 2]
    assert [r.function_id for r in held.take("a")] == [1, 2]
    assert held.take("a") == [] and held.peek("a") == []
    held.put_back("b", [row(0)])  # a failed write puts its rows back ahead
    assert [r.function_id for r in held.take("b")] == [0, 1]
    assert held.close() == [] and store.written == []


def test_the_flusher_writes_rows_held_longer_than_hold_s_and_only_those() -> None:
    store = Store()
    held = HeldSteps(store.write, hold_s=0.05)
    started = time.monotonic()
    held.hold("a", row(1))
    assert store.wrote.wait(5)
    assert time.monotonic() - started >= 0.05
    assert store.written == [("a", 1)]
    deadline = time.monotonic() + 5
    while held.peek("a"):  # written: no longer held (once the flusher has noted it)
        assert time.monotonic() < deadline
        time.sleep(0.005)
    held.hold("a", row(2))
    assert [r.function_id for r in held.take("a")] == [2]  # the workflow's write was first
    time.sleep(0.15)
    assert store.written == [("a", 1)]
    assert held.close() == []


def test_a_failed_flush_is_retried_and_close_hands_back_what_is_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_held, "RETRY_S", 0.05)
    store = Store()
    store.fail = True
    held = HeldSteps(store.write, hold_s=0.01)
    held.hold("a", row(1))
    time.sleep(0.1)  # at least one failed attempt
    assert [r.function_id for r in held.peek("a")] == [1]
    store.fail = False
    assert store.wrote.wait(5)
    assert store.written == [("a", 1)]
    store.fail = True
    held.hold("b", row(3))
    left = held.close()
    assert [(wfid, r.function_id) for wfid, r in left] == [("b", 3)]
    assert not held.hold("c", row(1))  # closed: the caller writes it itself


def test_a_flusher_asleep_after_an_idle_spell_is_woken_by_the_next_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once nothing has been held for LINGER_S the flusher stops polling; a hold then wakes
    it, and the record is still written after hold_s."""
    monkeypatch.setattr(_held, "LINGER_S", 0.05)
    store = Store()
    held = HeldSteps(store.write, hold_s=0.02)
    held.hold("a", row(1))
    assert store.wrote.wait(5)
    time.sleep(0.3)  # idle for longer than LINGER_S: asleep
    assert held._sleeping  # pyright: ignore[reportPrivateUsage]
    store.wrote.clear()
    held.hold("b", row(2))
    assert store.wrote.wait(5)
    assert store.written == [("a", 1), ("b", 2)]
    assert held.close() == []
