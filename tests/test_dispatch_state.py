"""The versioning rules of DBOS.upsert_event_dispatch_state, on SQLite and Postgres.

Each test states one rule from DBOSExternalState's docstring. Every upsert returns what
is stored afterwards, so a writer that lost sees the newer value.
"""

import pytest

from dbos_sdk import DBOS, DBOSExternalState, DBOSNotLaunchedError


def _put(
    value: str | None,
    t: float | None = None,
    seq: int | None = None,
    *,
    key: str = "k",
    service: str = "svc",
    fn: str = "wf",
) -> DBOSExternalState:
    state = DBOSExternalState(
        service=service, workflow_fn_name=fn, key=key, value=value, update_time=t, update_seq=seq
    )
    return DBOS.upsert_event_dispatch_state(state)


def _stored(key: str = "k") -> tuple[str | None, float | None, int | None]:
    s = DBOS.get_event_dispatch_state("svc", "wf", key)
    assert s is not None
    return s.value, s.update_time, s.update_seq


def test_first_write_is_stored_and_returned_and_absent_keys_are_none(dbos: DBOS) -> None:
    DBOS.launch()
    assert DBOS.get_event_dispatch_state("svc", "wf", "k") is None
    got = _put("v1", 10.5, 3)
    assert got == DBOSExternalState(
        service="svc", workflow_fn_name="wf", key="k", value="v1", update_time=10.5, update_seq=3
    )
    assert DBOS.get_event_dispatch_state("svc", "wf", "k") == got
    # (service, workflow_fn_name, key) is the identity: other parts of it are other rows.
    assert DBOS.get_event_dispatch_state("svc", "other", "k") is None
    assert DBOS.get_event_dispatch_state("other", "wf", "k") is None


def test_a_lower_update_time_changes_nothing_and_returns_the_stored_row(dbos: DBOS) -> None:
    DBOS.launch()
    _put("new", t=100.0)
    got = _put("old", t=99.0)
    assert (got.value, got.update_time, got.update_seq) == ("new", 100.0, None)
    assert _stored() == ("new", 100.0, None)


def test_a_lower_update_seq_changes_nothing_and_returns_the_stored_row(dbos: DBOS) -> None:
    DBOS.launch()
    _put("new", seq=7)
    got = _put("old", seq=6)
    assert (got.value, got.update_seq) == ("new", 7)
    assert _stored() == ("new", None, 7)


def test_an_equal_version_changes_nothing(dbos: DBOS) -> None:
    DBOS.launch()
    _put("first", t=5.0, key="time")
    assert _put("second", t=5.0, key="time").value == "first"
    _put("first", seq=5, key="seq")
    assert _put("second", seq=5, key="seq").value == "first"
    _put("first", t=5.0, seq=5, key="both")
    assert _put("second", t=5.0, seq=5, key="both").value == "first"


def test_a_greater_version_replaces_the_value(dbos: DBOS) -> None:
    DBOS.launch()
    _put("a", t=1.0, key="time")
    assert _put("b", t=2.0, key="time") == DBOS.get_event_dispatch_state("svc", "wf", "time")
    assert _stored("time") == ("b", 2.0, None)
    _put("a", seq=1, key="seq")
    assert _put("b", seq=2, key="seq").value == "b"
    assert _stored("seq") == ("b", None, 2)


def test_with_both_versions_either_greater_replaces_and_versions_never_go_back(
    dbos: DBOS,
) -> None:
    DBOS.launch()
    _put("v0", t=10.0, seq=5)
    # time greater, seq lower: replaced; the stored versions are the greatest seen.
    assert _put("v1", t=11.0, seq=3).value == "v1"
    assert _stored() == ("v1", 11.0, 5)
    # time lower, seq greater: replaced.
    assert _put("v2", t=9.0, seq=6).value == "v2"
    assert _stored() == ("v2", 11.0, 6)
    # both lower: nothing changes.
    assert _put("v3", t=1.0, seq=1).value == "v2"
    # A later single-version write still compares against the greatest version seen.
    assert _put("v4", seq=4).value == "v2"
    assert _put("v5", t=10.5).value == "v2"
    assert _stored() == ("v2", 11.0, 6)


def test_a_row_never_versioned_is_last_write_wins(dbos: DBOS) -> None:
    DBOS.launch()
    _put("a")
    assert _put("b").value == "b"
    assert _put(None).value is None
    assert _stored() == (None, None, None)
    # The first versioned write to an unversioned row wins as well.
    assert _put("c", t=1.0).value == "c"
    assert _stored() == ("c", 1.0, None)


def test_an_unversioned_write_to_a_versioned_row_replaces_the_value_and_keeps_versions(
    dbos: DBOS,
) -> None:
    DBOS.launch()
    _put("versioned", t=50.0, seq=9)
    got = _put("forced")
    assert (got.value, got.update_time, got.update_seq) == ("forced", 50.0, 9)
    # The kept versions still guard the row: a lower write loses, a greater one wins.
    assert _put("stale", t=49.0, seq=8).value == "forced"
    assert _put("fresh", t=51.0).value == "fresh"
    assert _stored() == ("fresh", 51.0, 9)


def test_dispatch_state_needs_a_launched_runtime(dbos: DBOS) -> None:
    with pytest.raises(DBOSNotLaunchedError, match="upsert_event_dispatch_state"):
        _put("x")
    with pytest.raises(DBOSNotLaunchedError, match="get_event_dispatch_state"):
        DBOS.get_event_dispatch_state("svc", "wf", "k")


def test_the_state_survives_a_relaunch(dbos: DBOS) -> None:
    DBOS.launch()
    _put("kept", t=3.0, seq=1)
    DBOS.shutdown()
    DBOS.launch()
    assert _stored() == ("kept", 3.0, 1)
    assert _put("older", t=2.0).value == "kept"
