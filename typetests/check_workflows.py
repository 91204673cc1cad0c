"""Typetests: @DBOS.workflow, @DBOS.step and @DBOS.required_roles keep exact signatures.

Checked (never run) by mypy --strict and pyright strict. Positive cases assert on *call
results* (TYPING.md §2.1); negative lines carry both checkers' ignore comments, so a
rejection that disappears, or changes kind, fails the build (TYPING.md §4.2).
"""

from collections.abc import Sequence
from typing import TypeVar, assert_type

from dbos_sdk import DBOS, DBOSConfiguredInstance

T = TypeVar("T")

# --- free functions: bare, empty-parens and configured decorators, sync and async ------


@DBOS.workflow
def wf_bare(x: int, y: str = "") -> float:
    return float(x)


@DBOS.workflow()
def wf_parens(items: Sequence[str], *, sep: str = ",") -> str:
    return sep.join(items)


@DBOS.workflow(name="orders.process")
def wf_named(order_id: str, qty: int) -> dict[str, int]:
    return {order_id: qty}


@DBOS.workflow(name=None)
def wf_none_name() -> None:
    return None


@DBOS.workflow
async def awf_bare(x: int) -> list[int]:
    return [x]


@DBOS.workflow(name="async.named")
async def awf_named(*, key: str) -> bytes:
    return key.encode()


@DBOS.step
def st_bare(a: int, b: int) -> int:
    return a + b


@DBOS.step()
def st_parens(s: str) -> str:
    return s


@DBOS.step(
    name="fetch", retries_allowed=True, max_attempts=5, interval_seconds=0.5, backoff_rate=1.5
)
def st_retry(url: str, *, timeout: float = 1.0) -> bytes:
    return url.encode()


@DBOS.step(retries_allowed=True)
async def ast_retry(n: int) -> tuple[int, str]:
    return n, str(n)


# A generic function stays generic through the decorator (TYPING.md §2.5).
@DBOS.workflow
def wf_generic(x: T) -> list[T]:
    return [x]


# required_roles below @DBOS.workflow keeps the signature too.
@DBOS.workflow(name="admin.only")
@DBOS.required_roles(["admin"])
def wf_roles(user_id: int) -> str:
    return str(user_id)


def sync_calls() -> None:
    assert_type(wf_bare(1), float)
    assert_type(wf_bare(1, "y"), float)
    assert_type(wf_bare(x=1, y="y"), float)
    assert_type(wf_parens(["a"], sep=";"), str)
    assert_type(wf_named("o-1", 2), dict[str, int])
    assert_type(wf_none_name(), None)
    assert_type(st_bare(1, 2), int)
    assert_type(st_parens("s"), str)
    assert_type(st_retry("u", timeout=2.0), bytes)
    assert_type(wf_generic(1), list[int])
    assert_type(wf_generic("s"), list[str])
    assert_type(wf_roles(7), str)

    # Wrong argument types.
    wf_bare("1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    wf_bare(1, 2)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    wf_named("o-1", "2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    st_bare(1, "2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    st_retry(b"u")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    wf_roles("7")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    # Extra, unknown or missing arguments.
    wf_bare(1, "y", 3)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    wf_bare(1, z=2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    wf_named("o-1")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    st_parens()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    # Keyword-only parameters stay keyword-only.
    wf_parens(["a"], ";")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    st_retry("u", 2.0)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    # The result type is the function's, not Any.
    bad: str = st_bare(1, 2)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    del bad


async def async_calls() -> None:
    assert_type(await awf_bare(1), list[int])
    assert_type(await awf_named(key="k"), bytes)
    assert_type(await ast_retry(3), tuple[int, str])

    await awf_bare("1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await awf_named("k")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    await ast_retry(3, 4)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


# --- bad decorator options are rejected ---------------------------------------------------
# Called as expressions: on a decorator line the failed overload also makes the decorated
# function untyped (mypy untyped-decorator, pyright reportUntypedFunctionDecorator), which
# would only add noise here.


def bad_options() -> None:
    DBOS.workflow(name=1)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    DBOS.workflow(nme="x")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    DBOS.workflow("orders")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    DBOS.workflow(wf_bare, name="x")  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    DBOS.step(retries_allowed="yes")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    DBOS.step(max_attempts=2.5)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    DBOS.step(interval_seconds="1")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    DBOS.step(retries=3)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue]
    DBOS.step(True)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
    DBOS.required_roles([1])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType, reportCallIssue]
    DBOS.required_roles("admin")  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]
    DBOS.workflow(1)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]


# The same on a decorator line: the failed call also leaves the function untyped in mypy,
# and in pyright whenever it cannot pick an overload to evaluate (unknown keyword).
@DBOS.step(max_attempts="3")  # type: ignore[call-overload, untyped-decorator]  # pyright: ignore[reportArgumentType]
def st_bad_decorated() -> None: ...


@DBOS.step(retries=3)  # type: ignore[call-overload, untyped-decorator]  # pyright: ignore[reportCallIssue, reportUntypedFunctionDecorator]
def st_unknown_option_decorated() -> None: ...


# --- methods: a plain class and a DBOSConfiguredInstance subclass -------------------------


class Plain:
    @DBOS.workflow
    def run(self, n: int) -> str:
        return str(n)

    @DBOS.step(name="plain.fetch", retries_allowed=True, max_attempts=2)
    def fetch(self, key: str, *, default: int = 0) -> int:
        return default

    @DBOS.workflow()
    async def arun(self, n: int) -> float:
        return float(n)

    @staticmethod
    @DBOS.step
    def helper(x: bytes) -> int:
        return len(x)


class Service(DBOSConfiguredInstance):
    def __init__(self, config_name: str, base: int) -> None:
        super().__init__(config_name)
        self.base = base

    @DBOS.workflow(name="service.total")
    def total(self, values: list[int]) -> int:
        return self.base + sum(values)

    @DBOS.step(retries_allowed=True, interval_seconds=0.1)
    async def lookup(self, key: str) -> str | None:
        return key

    @DBOS.workflow
    @DBOS.required_roles(["ops"])
    def guarded(self, flag: bool) -> bool:
        return flag


def method_calls() -> None:
    p = Plain()
    assert_type(p.run(1), str)
    assert_type(Plain.run(p, 1), str)
    assert_type(p.fetch("k", default=1), int)
    assert_type(Plain.helper(b"x"), int)
    assert_type(p.helper(b"x"), int)

    svc = Service("svc", base=1)
    assert_type(svc.config_name, str)
    assert_type(svc.total([1, 2]), int)
    assert_type(Service.total(svc, [1]), int)
    assert_type(svc.guarded(True), bool)

    p.run("1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    p.run(1, 2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    p.fetch("k", 1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    Plain.run(1, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    Plain.helper("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    svc.total(["1"])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    svc.total()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    Service(1, 2)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def async_method_calls() -> None:
    assert_type(await Plain().arun(2), float)
    assert_type(await Service("svc", 1).lookup("k"), str | None)

    await Plain().arun("2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await Service("svc", 1).lookup()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


# --- context read from DBOS (class-level properties) and auth helpers -----------------


def context_reads() -> None:
    assert_type(DBOS.workflow_id, str | None)
    assert_type(DBOS.step_id, int | None)
    assert_type(DBOS.authenticated_user, str | None)
    assert_type(DBOS.authenticated_roles, tuple[str, ...] | None)
    assert_type(DBOS.assumed_role, str | None)
    assert_type(DBOS.with_authed_context("u", ["r"], lambda: wf_bare(1)), float)

    DBOS.workflow_id = "x"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
    DBOS.with_authed_context("u", ["r"], wf_bare)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def async_context_reads() -> None:
    assert_type(await DBOS.with_authed_context_async("u", ["r"], lambda: awf_bare(1)), list[int])
