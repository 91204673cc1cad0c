"""Authentication: with_authed_context (sync and async), what a workflow reads about its
user wherever it runs (called, started in the background, dequeued, recovered), and
required_roles, on SQLite and Postgres.
"""

import asyncio

import pytest

from dbos_sdk import (
    DBOS,
    DBOSNotAuthorizedError,
    DBOSRegistrationError,
    Queue,
    SetWorkflowID,
)

Auth = tuple[str | None, tuple[str, ...] | None, str | None]


def _auth() -> Auth:
    return DBOS.authenticated_user, DBOS.authenticated_roles, DBOS.assumed_role


def test_with_authed_context_sets_the_user_for_the_callback_only(dbos: DBOS) -> None:
    seen: list[Auth] = []

    @DBOS.workflow()
    def whoami() -> Auth:
        seen.append(_auth())
        return _auth()

    DBOS.launch()
    assert _auth() == (None, None, None)
    inside = DBOS.with_authed_context("alice", ["reader", "writer"], _auth)
    assert inside == ("alice", ("reader", "writer"), None)
    with SetWorkflowID("authed-1"):
        got = DBOS.with_authed_context("alice", ["reader"], whoami)
    assert got == ("alice", ("reader",), None)
    assert _auth() == (None, None, None)  # restored afterwards
    status = DBOS.get_workflow_status("authed-1")
    assert status is not None
    assert (status.authenticated_user, status.authenticated_roles) == ("alice", ["reader"])
    # Without a context, a workflow runs for nobody.
    with SetWorkflowID("anonymous"):
        assert whoami() == (None, None, None)
    anon = DBOS.get_workflow_status("anonymous")
    assert anon is not None and anon.authenticated_user is None


def test_with_authed_context_async(dbos: DBOS) -> None:
    @DBOS.workflow()
    async def whoami_async() -> Auth:
        await asyncio.sleep(0)
        return _auth()

    DBOS.launch()

    async def main() -> tuple[Auth, Auth, Auth]:
        async def call() -> Auth:
            return await whoami_async()

        async def start() -> Auth:
            handle = await DBOS.start_workflow_async(whoami_async)
            return await handle.get_result(timeout=10)

        called = await DBOS.with_authed_context_async("bob", ["ops"], call)
        started = await DBOS.with_authed_context_async("carol", ["dev"], start)
        return called, started, _auth()

    called, started, after = asyncio.run(main())
    assert called == ("bob", ("ops",), None)
    assert started == ("carol", ("dev",), None)
    assert after == (None, None, None)


def test_background_and_queued_workflows_read_the_recorded_user(dbos: DBOS) -> None:
    queue = Queue("auth-q")

    @DBOS.workflow()
    def whoami() -> Auth:
        return _auth()

    DBOS.launch()

    def start_both() -> tuple[str, str]:
        started = DBOS.start_workflow(whoami)  # runs on a worker thread
        queued = queue.enqueue(whoami)  # runs when the queue runner dequeues it
        return started.workflow_id, queued.workflow_id

    started_id, queued_id = DBOS.with_authed_context("dave", ["admin"], start_both)
    for wfid in (started_id, queued_id):
        handle = DBOS.retrieve_workflow(wfid)
        assert handle.get_result(timeout=10) == ("dave", ("admin",), None)
        assert handle.get_status().authenticated_roles == ["admin"]


def test_a_recovered_workflow_runs_for_its_recorded_user(dbos: DBOS) -> None:
    runs: list[Auth] = []

    @DBOS.workflow()
    def whoami() -> Auth:
        runs.append(_auth())
        return _auth()

    @DBOS.required_roles(["admin"])
    @DBOS.workflow()
    def guarded() -> Auth:
        runs.append(_auth())
        return _auth()

    DBOS.launch()
    with SetWorkflowID("rec-auth"):
        DBOS.with_authed_context("erin", ["auditor"], whoami)
    with SetWorkflowID("rec-guarded"):
        DBOS.with_authed_context("frank", ["user", "admin"], guarded)
    _mark_pending("rec-auth", "rec-guarded")
    DBOS.shutdown()
    runs.clear()
    DBOS.launch()  # recovers both, outside any authed context
    assert DBOS.retrieve_workflow("rec-auth").get_result(timeout=10) == (
        "erin",
        ("auditor",),
        None,
    )
    assert DBOS.retrieve_workflow("rec-guarded").get_result(timeout=10) == (
        "frank",
        ("user", "admin"),
        "admin",
    )
    assert sorted(r[0] or "" for r in runs) == ["erin", "frank"]  # both really re-ran


def test_required_roles_are_enforced_and_the_matching_role_is_assumed(dbos: DBOS) -> None:
    runs: list[str | None] = []

    @DBOS.required_roles(["admin", "owner"])
    @DBOS.workflow()
    def below() -> str | None:  # required_roles applied first
        runs.append(DBOS.assumed_role)
        return DBOS.assumed_role

    @DBOS.workflow()
    @DBOS.required_roles(["owner"])
    def above() -> str | None:  # required_roles applied to the plain function
        runs.append(DBOS.assumed_role)
        return DBOS.assumed_role

    DBOS.launch()
    with pytest.raises(DBOSNotAuthorizedError, match=r"below.*\['admin', 'owner'\]"):
        below()
    with pytest.raises(DBOSNotAuthorizedError, match="user"):
        DBOS.with_authed_context("gina", ["user"], below)
    with pytest.raises(DBOSNotAuthorizedError):
        DBOS.with_authed_context("gina", ["user"], lambda: DBOS.start_workflow(below))
    assert runs == []  # nothing ran, and nothing was recorded
    assert DBOS.list_workflows(name=below.__qualname__) == []
    with SetWorkflowID("as-owner"):
        assert DBOS.with_authed_context("hal", ["user", "owner"], below) == "owner"
    assert DBOS.with_authed_context("hal", ["owner"], above) == "owner"
    status = DBOS.get_workflow_status("as-owner")
    assert status is not None and status.assumed_role == "owner"
    with pytest.raises(DBOSRegistrationError, match="non-empty list"):
        DBOS.required_roles([])


def test_child_workflows_inherit_the_parents_user_and_roles(dbos: DBOS) -> None:
    @DBOS.required_roles(["admin"])
    @DBOS.workflow()
    def child() -> Auth:
        return _auth()

    @DBOS.workflow()
    def parent() -> tuple[Auth, Auth]:
        direct = child()
        background = DBOS.start_workflow(child).get_result(timeout=10)
        return direct, background

    @DBOS.workflow()
    def parent_without_role() -> Auth:
        return child()

    DBOS.launch()
    with SetWorkflowID("parent"):
        direct, background = DBOS.with_authed_context("ivy", ["admin"], parent)
    assert direct == background == ("ivy", ("admin",), "admin")
    for child_id in ("parent-1", "parent-2"):
        status = DBOS.get_workflow_status(child_id)
        assert status is not None
        assert (status.authenticated_user, status.authenticated_roles) == ("ivy", ["admin"])
        assert status.assumed_role == "admin"
    # The parent's roles are what the child is checked against.
    with pytest.raises(DBOSNotAuthorizedError, match="child"):
        DBOS.with_authed_context("jay", ["user"], parent_without_role)


def _mark_pending(*workflow_ids: str) -> None:
    """Make finished workflows look interrupted, so the next launch recovers them."""
    from dbos_sdk._runtime import current_runtime

    rt = current_runtime()
    assert rt is not None
    for wfid in workflow_ids:
        with rt.sysdb._cursor() as ex:  # pyright: ignore[reportPrivateUsage]
            ex(
                f"UPDATE {rt.sysdb._ws} SET status = 'PENDING' WHERE workflow_uuid = ?",  # pyright: ignore[reportPrivateUsage]
                (wfid,),
            )
