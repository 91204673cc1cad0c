"""How the demo's parent and its app processes talk: settings in (the environment), events
out (lines on the app's stdout)."""

import json
import os
import sys
import threading
import time
from typing import Any, Final

import attrs

SETTINGS_ENV: Final = "DBOS_SDK_DEMO_APP"
"""The app's settings, as JSON: in the environment, so that a password in the database URL
does not show in the process list."""
EVENT_PREFIX: Final = "@@dbos-demo "
_stdout_lock: Final = threading.Lock()
TICK_EVERY_S: Final = 2
"""The app's schedule ticks every this many seconds."""
RECORD_ORDER: Final = "demo.record_order"
"""The registered name of the app's transaction step."""


class DemoError(Exception):
    """The demo cannot go on, or durability did not hold; the message says how."""


@attrs.frozen(kw_only=True)
class AppSettings:
    """What the parent tells an app process."""

    system_database_url: str
    schema: str
    orders_db: str
    """Path of the app's own SQLite file (its orders table)."""
    executor_id: str
    workflow_id: str
    order_id: str
    tick_workflow: str
    """Registered name of the scheduled workflow: one per demo run, because the scheduler
    resumes each schedule from its last tick, and a demo run must not catch up the ticks
    an earlier run (in the same database) left behind."""
    start: bool
    """Start the order workflow (first process), or only launch and let recovery run it."""
    pause_at_step: int | None
    """The step in which the app waits to be killed, or None."""

    def to_json(self) -> str:
        """The settings as the parent puts them in the environment."""
        return json.dumps(attrs.asdict(self))

    @staticmethod
    def from_env() -> "AppSettings":
        """The settings the parent gave this process; DemoError if there are none."""
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise DemoError(
                f"This is the demo's app process, run by `dbos-sdk demo` (which sets "
                f"${SETTINGS_ENV}); run `dbos-sdk demo` instead."
            )
        try:
            data: dict[str, Any] = json.loads(text)
            pause = data["pause_at_step"]
            return AppSettings(
                system_database_url=str(data["system_database_url"]),
                schema=str(data["schema"]),
                orders_db=str(data["orders_db"]),
                executor_id=str(data["executor_id"]),
                workflow_id=str(data["workflow_id"]),
                order_id=str(data["order_id"]),
                tick_workflow=str(data["tick_workflow"]),
                start=bool(data["start"]),
                pause_at_step=int(pause) if pause is not None else None,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DemoError(f"${SETTINGS_ENV} is malformed ({exc!r}).") from exc


@attrs.frozen(kw_only=True)
class Event:
    """One line an app process prints for the parent.

    ``kind`` is ``launched`` (DBOS.launch() returned), ``step`` (a step or transaction
    function starts: ``step``, ``name``, ``what``), ``paused`` (it waits to be killed),
    ``tick`` (a scheduled workflow runs: ``scheduled`` and ``actual``, ISO times) or
    ``result`` (the order workflow's ``result``).
    """

    kind: str
    pid: int
    at: float
    """When it was printed (POSIX time)."""
    workflow_id: str = ""
    step: int | None = None
    name: str = ""
    what: str = ""
    result: str = ""
    scheduled: str = ""
    actual: str = ""

    def line(self) -> str:
        """The event as printed."""
        return EVENT_PREFIX + json.dumps(attrs.asdict(self))

    @staticmethod
    def parse(line: str) -> "Event | None":
        """The event printed on ``line``, or None for any other output."""
        if not line.startswith(EVENT_PREFIX):
            return None
        try:
            data: dict[str, Any] = json.loads(line[len(EVENT_PREFIX) :])
            step = data.get("step")
            return Event(
                kind=str(data["kind"]),
                pid=int(data["pid"]),
                at=float(data["at"]),
                workflow_id=str(data.get("workflow_id", "")),
                step=int(step) if step is not None else None,
                name=str(data.get("name", "")),
                what=str(data.get("what", "")),
                result=str(data.get("result", "")),
                scheduled=str(data.get("scheduled", "")),
                actual=str(data.get("actual", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # not an event after all: shown as printed


def emit(
    kind: str,
    *,
    workflow_id: str = "",
    step: int | None = None,
    name: str = "",
    what: str = "",
    result: str = "",
    scheduled: str = "",
    actual: str = "",
) -> None:
    """Print an event for the parent (flushed at once: the parent acts on it)."""
    event = Event(
        kind=kind,
        pid=os.getpid(),
        at=time.time(),
        workflow_id=workflow_id,
        step=step,
        name=name,
        what=what,
        result=result,
        scheduled=scheduled,
        actual=actual,
    )
    with _stdout_lock:  # steps and ticks run in several threads: one line each, whole
        sys.stdout.write(event.line() + "\n")
        sys.stdout.flush()
