"""The conformance suite's machinery: transactions built from a list of actions (so each
check is written once for sync and async kits), workflows around them, and ways to run a
transaction as another execution of a workflow would."""

import asyncio
import contextlib
import importlib
import inspect
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from typing_extensions import TypeIs

from dbos_sdk import DBOS
from dbos_sdk._context import StepCall, WorkflowContext, current_step, current_workflow
from dbos_sdk._datasource._register import register_transaction, register_transaction_async
from dbos_sdk._registry import registration_of
from dbos_sdk._sysdb import StepRow

from ._ds_kit import AnyDataSourceKit, AsyncDataSourceKit, DataSourceKit, KitScratch

Args = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Hook:
    """Call ``fn(args)`` in the transaction body (plain Python; it may block)."""

    fn: Callable[[Args], object]


@dataclass(frozen=True, slots=True)
class Db:
    """Run a kit operation in the transaction: ``fn(results, args)`` returns its result, or
    (async kits) an awaitable of it; ``results`` holds the earlier operations' results."""

    fn: Callable[[list[Any], Args], Any]


@dataclass(frozen=True, slots=True)
class Return:
    """Return ``fn(results, args)`` from the body."""

    fn: Callable[[list[Any], Args], Any]


@dataclass(frozen=True, slots=True)
class Raise:
    """Raise ``fn(args)`` from the body."""

    fn: Callable[[Args], BaseException]


Action = Hook | Db | Return | Raise


def is_async_kit(kit: AnyDataSourceKit) -> bool:
    return isinstance(kit, AsyncDataSourceKit)


def _is_kit(obj: object) -> TypeIs[AnyDataSourceKit]:
    return isinstance(obj, DataSourceKit | AsyncDataSourceKit)


def build_kit(path: str, scratch: KitScratch) -> AnyDataSourceKit:
    """The kit that the factory named ``"module:attribute"`` builds on ``scratch``."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"kit_factory={path!r}: name the kit factory as 'module:attribute', e.g. "
            "'tests.my_kits:MyDataSourceKit'."
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"kit_factory={path!r}: cannot import {module_name!r} ({exc}); the module must be "
            "importable from the test process and from a child process started in its "
            "working directory with its sys.path."
        ) from exc
    factory: object = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"kit_factory={path!r}: {module_name} has no callable {attr!r}.")
    kit: object = factory(scratch)
    if _is_kit(kit):
        return kit
    raise TypeError(
        f"kit_factory={path!r} built {kit!r}, not a DataSourceKit or an AsyncDataSourceKit."
    )


def _step(results: list[Any], args: Args, action: Action) -> tuple[bool, Any]:
    """Carry out a non-database action; (True, value) when the body returns ``value``."""
    if isinstance(action, Hook):
        action.fn(args)
        return False, None
    if isinstance(action, Return):
        return True, action.fn(results, args)
    assert isinstance(action, Raise)
    raise action.fn(args)


def define(
    kit: AnyDataSourceKit,
    ds_name: str,
    name: str,
    actions: Sequence[Action],
    config: object | None = None,
) -> Callable[..., Any]:
    """Register, as a transaction of datasource ``ds_name`` recorded as ``name``, a body
    (plain or ``async``, like the kit) that carries out ``actions``."""
    acts = tuple(actions)
    if is_async_kit(kit):

        async def abody(*args: Any) -> Any:
            results: list[Any] = []
            for action in acts:
                if isinstance(action, Db):
                    value = action.fn(results, args)
                    results.append(await value if inspect.isawaitable(value) else value)
                    continue
                done, value = _step(results, args, action)
                if done:
                    return value
            return None

        return register_transaction_async(ds_name, abody, name=name, config=config)

    def body(*args: Any) -> Any:
        results: list[Any] = []
        for action in acts:
            if isinstance(action, Db):
                results.append(action.fn(results, args))
                continue
            done, value = _step(results, args, action)
            if done:
                return value
        return None

    return register_transaction(ds_name, body, name=name, config=config)


def workflow(kit: AnyDataSourceKit, name: str, tx: Callable[..., Any]) -> Callable[..., Any]:
    """Register a workflow (plain or ``async``, like the kit) that returns ``tx(*args)``."""
    if is_async_kit(kit):

        async def awf(*args: Any) -> Any:
            return await tx(*args)

        return DBOS.workflow(name=name)(awf)

    def wf(*args: Any) -> Any:
        return tx(*args)

    return DBOS.workflow(name=name)(wf)


def sequence_workflow(
    kit: AnyDataSourceKit, name: str, txs: Sequence[Callable[..., Any]]
) -> Callable[[], Any]:
    """Register a workflow that calls each of ``txs`` (no arguments) in turn, as steps 1,
    2, ..., and returns the list of their results."""
    steps = tuple(txs)
    if is_async_kit(kit):

        async def awf() -> list[Any]:
            return [await tx() for tx in steps]

        return DBOS.workflow(name=name)(awf)

    def wf() -> list[Any]:
        return [tx() for tx in steps]

    return DBOS.workflow(name=name)(wf)


def call(kit: AnyDataSourceKit, fn: Callable[..., Any], *args: Any) -> Any:
    """Call a workflow or transaction of the kit's kind and return its result."""
    if is_async_kit(kit):
        return asyncio.run(fn(*args))
    return fn(*args)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("value", result) or ("error", "Type: message")."""
    try:
        return ("value", fn())
    except Exception as exc:
        return ("error", f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def as_step_of(workflow_id: str, recorded: dict[int, StepRow] | None) -> Generator[None]:
    """Run the next transaction call as another execution of ``workflow_id`` would: a first
    execution (``recorded=None``: checkpoint optimistically) or a resumed one (``{}``: look
    the checkpoint up first)."""
    ctx = WorkflowContext(
        workflow_id=workflow_id,
        name="another-execution",
        recorded=recorded,
        cancelled=threading.Event(),
        deadline_ms=None,
    )
    token = current_workflow.set(ctx)
    try:
        yield
    finally:
        current_workflow.reset(token)


def commit_in_the_datasource_only(
    kit: AnyDataSourceKit, tx: Callable[..., Any], workflow_id: str, *args: Any
) -> Any:
    """Run ``tx`` as step 1 of ``workflow_id`` the way another execution of that workflow
    would, up to its datasource commit and no further: that execution never records the
    step in the system database (it died, or is still on its way there)."""
    reg = registration_of(tx)
    assert reg is not None, f"{tx!r} is not a registered transaction"
    with as_step_of(workflow_id, recorded=None):
        token = current_step.set(StepCall(1))
        try:
            return call(kit, reg.func, *args)
        finally:
            current_step.reset(token)


def resumed_call(
    kit: AnyDataSourceKit, tx: Callable[..., Any], workflow_id: str, *args: Any
) -> Any:
    """Call ``tx`` as step 1 of a resumed execution of ``workflow_id`` (one that may have
    run it before, so the datasource looks its checkpoint up first)."""
    with as_step_of(workflow_id, recorded={}):
        return call(kit, tx, *args)
