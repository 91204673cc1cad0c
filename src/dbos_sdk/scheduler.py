"""The cron scheduler: an event receiver built on the public receiver API alone.

``@DBOS.scheduled(cron)`` (the same as :func:`scheduled` here), stacked above
``@DBOS.workflow()``, runs a workflow taking ``(scheduled_time: datetime, actual_time:
datetime)`` at every tick of ``cron``:

- Cron syntax is croniter's: 5 fields, or 6 with **seconds first** (``"*/5 * * * * *"``
  is every five seconds); a 7th field is the year. Ticks are computed in UTC and both
  datetimes passed to the workflow are timezone-aware UTC.
- Each tick runs under the workflow ID ``sched-<workflow name>-<scheduled time ISO>``, so
  a tick never runs twice, even when several processes schedule the same function on a
  shared Postgres system database.
- ``mode="exactly_once_per_interval"`` (the default) records the last dispatched tick in
  the dispatch state (service ``"dbos.scheduler"``, the workflow's name, key
  ``"last_tick"``). At launch, every tick missed since then runs once, oldest first, with
  ``actual_time`` telling how late it is. The catch-up is bounded to the
  :data:`MAX_CATCHUP_TICKS` most recent missed ticks (a per-second schedule after a week
  of downtime would otherwise start 600,000 workflows); older ticks are skipped with a
  warning. The first launch ever starts from the current time.
- ``mode="when_active"`` runs only the ticks that fall while DBOS is launched.
- With ``queue``, each tick is enqueued on that queue instead of started at once.

One :class:`Scheduler` (a :class:`~dbos_sdk.DBOSLifecycleCallback`) serves every
scheduled workflow: it is registered with the first ``@DBOS.scheduled``, starts one
thread per scheduled workflow at launch and stops them at shutdown, before workflow
processing stops. An invalid cron expression fails ``DBOS.launch()`` with a
:class:`~dbos_sdk.DBOSLaunchError` naming the workflow and the expression.
"""

import inspect
import threading
import time
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from croniter import CroniterError, croniter

from dbos_sdk import (
    DBOS,
    DBOSConfigurationError,
    DBOSDatabaseConnectionError,
    DBOSError,
    DBOSExternalState,
    DBOSLifecycleCallback,
    DBOSRegistrationError,
    MethodRegistration,
    Queue,
    ReceiverRegistry,
    ScheduleMode,
    StartWorkflowOptions,
)

ScheduledF = TypeVar("ScheduledF", bound=Callable[[datetime, datetime], Any])
T = TypeVar("T")

SERVICE = "dbos.scheduler"
"""The ``service`` of the scheduler's dispatch state (and of its associations)."""
STATE_KEY = "last_tick"
"""The dispatch-state key holding a workflow's last dispatched tick (``update_time`` is
the tick's POSIX time, ``value`` its ISO form)."""
MAX_CATCHUP_TICKS = 1000
"""At most this many missed ticks (the most recent ones) run after downtime."""
_MODES: tuple[ScheduleMode, ...] = typing.get_args(ScheduleMode)
_RETRY_MAX_S = 5.0


class ScheduleInfo:
    """What ``@DBOS.scheduled`` associates with a workflow (the scheduler's method info)."""

    cron: str | None
    mode: ScheduleMode
    queue: str | None

    def __init__(self) -> None:
        self.cron = None
        self.mode = "exactly_once_per_interval"
        self.queue = None


def _no_info() -> None:
    return None


SCHEDULES: ReceiverRegistry[None, ScheduleInfo, None] = ReceiverRegistry(
    SERVICE, class_info=_no_info, method_info=ScheduleInfo, param_info=_no_info
)
"""The scheduler's association key: ``DBOS.get_associated_info(SCHEDULES)`` lists the
scheduled workflows with their :class:`ScheduleInfo`."""


def scheduled(
    cron: str,
    *,
    mode: ScheduleMode = "exactly_once_per_interval",
    queue: Queue | str | None = None,
) -> Callable[[ScheduledF], ScheduledF]:
    """Run the decorated workflow at every tick of ``cron`` (see the module docstring).

    Place it above ``@DBOS.workflow()``; the function must accept ``(scheduled_time,
    actual_time)``. A function that is not a workflow, or has another signature, is a
    DBOSRegistrationError naming it; so is scheduling after DBOS.launch().
    """
    if mode not in _MODES:
        raise DBOSRegistrationError(
            f"@DBOS.scheduled({cron!r}, mode={mode!r}): mode must be one of {list(_MODES)}."
        )
    queue_name = queue.name if isinstance(queue, Queue) else queue

    def deco(func: ScheduledF) -> ScheduledF:
        what = f"@DBOS.scheduled({cron!r}) on {getattr(func, '__qualname__', func)!r}"
        reg = _registered_workflow(func, what)
        _check_signature(func, what)
        first = not DBOS.get_associated_info(SCHEDULES)
        try:
            info = DBOS.associate_function_with_info(SCHEDULES, func)
        except DBOSRegistrationError as exc:
            raise DBOSRegistrationError(f"{what}: {exc}") from exc
        if info.cron is not None:
            raise DBOSRegistrationError(
                f"{what}: workflow {reg.name!r} is already scheduled with {info.cron!r}; "
                "give each schedule its own workflow."
            )
        info.cron, info.mode, info.queue = cron, mode, queue_name
        if first:
            DBOS.register_lifecycle_callback(Scheduler())
        return func

    return deco


def _registered_workflow(func: Callable[..., Any], what: str) -> MethodRegistration:
    for reg in DBOS.get_registered_workflows():
        if reg.registered_function is func:
            return reg
    raise DBOSRegistrationError(
        f"{what}: the function is not a DBOS workflow. Stack @DBOS.scheduled(...) above "
        "@DBOS.workflow() (decorators apply bottom-up, so the workflow must exist first)."
    )


def _check_signature(func: Callable[..., Any], what: str) -> None:
    """The function must accept two positional datetimes and require nothing else."""
    sig = inspect.signature(func)  # follows __wrapped__ to the user's function
    positional = [
        p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    var_positional = any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values())
    required = [
        p
        for p in sig.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    fits = (len(positional) >= 2 or var_positional) and len(required) <= 2
    fits = fits and all(p in positional[:2] for p in required)
    hints = _type_hints(func)
    wrong = [
        p.name for p in positional[:2] if p.name in hints and not _accepts_datetime(hints[p.name])
    ]
    if not fits or wrong:
        raise DBOSRegistrationError(
            f"{what}: a scheduled workflow takes (scheduled_time: datetime, actual_time: "
            f"datetime), but its signature is {sig}"
            + (f" ({', '.join(wrong)} cannot take a datetime)" if wrong else "")
            + "."
        )


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    target = inspect.unwrap(func)
    try:
        return typing.get_type_hints(target)
    except Exception:  # string annotations naming locals: leave them to the type checker
        return {}


def _accepts_datetime(hint: object) -> bool:
    """Whether a parameter annotated ``hint`` can take a datetime (lenient where unsure)."""
    if isinstance(hint, type):
        return issubclass(datetime, hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts_datetime(arg) for arg in typing.get_args(hint))
    return True  # Any, TypeVars and other forms: the type checkers judge those


class _Schedule:
    """One scheduled workflow, validated at launch."""

    reg: MethodRegistration
    cron: str
    mode: ScheduleMode
    queue: str | None

    def __init__(self, reg: MethodRegistration, info: ScheduleInfo) -> None:
        assert info.cron is not None
        self.reg, self.cron, self.mode, self.queue = reg, info.cron, info.mode, info.queue
        problem = None
        if not croniter.is_valid(self.cron, second_at_beginning=True):
            problem = "is not a valid cron expression"
        else:
            try:  # valid syntax can still never match (e.g. February 30th)
                self.next_tick(datetime.now(UTC))
            except CroniterError as exc:
                problem = f"never fires ({exc})"
        if problem is not None:
            raise DBOSConfigurationError(
                f"@DBOS.scheduled on workflow {reg.name!r}: {self.cron!r} {problem}; use 5 "
                "fields, or 6 with seconds first (e.g. '*/10 * * * * *' for every 10 seconds)."
            )

    @property
    def name(self) -> str:
        return self.reg.name

    def workflow_id(self, tick: datetime) -> str:
        return f"sched-{self.name}-{tick.isoformat()}"

    def ticks(self, after: datetime, upto: datetime) -> tuple[list[datetime], bool]:
        """The ticks in ``(after, upto]`` (``upto`` a whole second), oldest first, at most
        MAX_CATCHUP_TICKS of them (the most recent); and whether older ones were dropped."""
        it = croniter(self.cron, upto + timedelta(seconds=1), second_at_beginning=True)
        found: list[datetime] = []
        while True:
            tick = it.get_prev(datetime)
            if tick <= after:
                return found[::-1], False
            if len(found) == MAX_CATCHUP_TICKS:
                return found[::-1], True
            found.append(tick)

    def next_tick(self, after: datetime) -> datetime:
        return croniter(self.cron, after, second_at_beginning=True).get_next(datetime)


class Scheduler(DBOSLifecycleCallback):
    """Runs every ``@DBOS.scheduled`` workflow: one thread each, from launch to shutdown."""

    _stop: threading.Event
    _threads: list[threading.Thread]
    _schedules: list[_Schedule]

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads = []
        self._schedules = []

    def initialize(self) -> None:
        # Validate everything before starting anything: a bad cron fails launch cleanly.
        schedules = [
            _Schedule(r.method_reg, r.method_config)
            for r in DBOS.get_associated_info(SCHEDULES)
            if r.method_reg.kind == "workflow"  # a definition since replaced is skipped
        ]
        self._stop = threading.Event()  # one Scheduler serves every launch of the process
        self._schedules = schedules
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(s, self._stop),
                name=f"dbos-scheduler-{s.name}",
                daemon=True,
            )
            for s in schedules
        ]
        for t in self._threads:
            t.start()

    def destroy(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
            if t.is_alive():
                DBOS.logger.warning("Scheduler thread %s did not stop within 10s", t.name)
        self._threads = []

    def log_registered_endpoints(self) -> None:
        for s in self._schedules:
            DBOS.logger.info(
                "Scheduled workflow %s: cron %r, %s%s",
                s.name,
                s.cron,
                s.mode,
                f", on queue {s.queue!r}" if s.queue else "",
            )

    # --- the loop of one scheduled workflow ---------------------------------------------

    def _run(self, s: _Schedule, stop: threading.Event) -> None:
        try:
            resumed = self._resume_point(s, stop)
            if resumed is None:
                return
            last = resumed
            while not stop.is_set():
                now = _whole_second(datetime.now(UTC))
                due, dropped = s.ticks(last, now)
                if dropped:
                    DBOS.logger.warning(
                        "Scheduled workflow %s missed more than %d ticks since %s; only the "
                        "most recent %d run (from %s)",
                        s.name,
                        MAX_CATCHUP_TICKS,
                        last.isoformat(),
                        MAX_CATCHUP_TICKS,
                        due[0].isoformat(),
                    )
                for tick in due:
                    if not self._dispatch(s, tick, stop):
                        return
                    last = tick
                last = max(last, now)
                # Sleep until the next tick and start it at once; what else fell due
                # meanwhile (a slow start, a suspended machine) is found at the loop's top.
                tick = s.next_tick(last)
                if not _sleep_until(tick, stop) or not self._dispatch(s, tick, stop):
                    return
                last = tick
        except Exception:
            DBOS.logger.exception("The scheduler of workflow %s stopped", s.name)

    def _resume_point(self, s: _Schedule, stop: threading.Event) -> datetime | None:
        """Where dispatching starts: the last dispatched tick, or now. None if stopped."""
        now = _whole_second(datetime.now(UTC))
        if s.mode != "exactly_once_per_interval":
            return now
        found = _retrying(
            stop,
            f"reading the last tick of {s.name}",
            lambda: DBOS.get_event_dispatch_state(SERVICE, s.name, STATE_KEY),
        )
        if found is None:
            return None
        state = found[0]
        if state is None or state.update_time is None:
            return now  # never ran: no backlog to catch up
        return datetime.fromtimestamp(state.update_time, UTC)

    def _dispatch(self, s: _Schedule, tick: datetime, stop: threading.Event) -> bool:
        """Durably start (or enqueue) the tick's workflow, then record the tick. Retries
        transient failures until it succeeds or the scheduler stops (False)."""

        def start() -> None:
            DBOS.start_workflow_registered(
                s.reg,
                (tick, datetime.now(UTC)),
                {},
                StartWorkflowOptions(workflow_id=s.workflow_id(tick), queue_name=s.queue),
            )
            if s.mode == "exactly_once_per_interval":
                DBOS.upsert_event_dispatch_state(
                    DBOSExternalState(
                        service=SERVICE,
                        workflow_fn_name=s.name,
                        key=STATE_KEY,
                        value=tick.isoformat(),
                        update_time=tick.timestamp(),
                    )
                )

        try:
            return _retrying(stop, f"starting {s.workflow_id(tick)}", start) is not None
        except DBOSError as exc:  # not transient (e.g. an unknown queue): skip the tick
            DBOS.logger.error(
                "Scheduled workflow %s: the tick %s was not started: %s",
                s.name,
                tick.isoformat(),
                exc,
            )
            return True


def _retrying(stop: threading.Event, what: str, op: Callable[[], T]) -> tuple[T] | None:
    """``(op(),)``, retrying transient failures with backoff; None once ``stop`` is set.
    A DBOSError other than a lost connection is not transient and propagates."""
    delay = 0.1
    while not stop.is_set():
        try:
            return (op(),)
        except DBOSError as exc:
            if not isinstance(exc, DBOSDatabaseConnectionError):
                raise
            error: Exception = exc
        except Exception as exc:
            error = exc
        DBOS.logger.warning("Scheduler: %s failed (%r); retrying in %.1fs", what, error, delay)
        stop.wait(delay)
        delay = min(delay * 2, _RETRY_MAX_S)
    return None


def _whole_second(t: datetime) -> datetime:
    return t.replace(microsecond=0)


def _sleep_until(when: datetime, stop: threading.Event) -> bool:
    """Sleep until the wall clock reaches ``when``; False if ``stop`` was set first."""
    target = when.timestamp()
    while True:
        remaining = target - time.time()
        if remaining <= 0:
            return True
        if stop.wait(remaining):
            return False
