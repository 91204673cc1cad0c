"""Typetests: ``@DBOS.scheduled``.

It accepts a workflow taking ``(datetime, datetime)`` (sync or async, extra defaulted
parameters allowed) and returns it unchanged, so the workflow keeps its exact signature
and can still be called directly. A wrong signature, a bad mode or a bad queue type is
rejected. Checked, never run.
"""

from datetime import UTC, datetime
from typing import assert_type

from dbos_sdk import DBOS, Queue, ScheduleMode
from dbos_sdk.scheduler import scheduled

queue = Queue("nightly")
now = datetime.now(UTC)


@DBOS.scheduled("0 3 * * *")
@DBOS.workflow()
def nightly(scheduled_time: datetime, actual_time: datetime) -> int:
    return 0


@DBOS.scheduled("*/5 * * * * *", mode="when_active", queue=queue)
@DBOS.workflow()
async def every_five_seconds(scheduled_time: datetime, actual_time: datetime) -> str:
    return ""


@DBOS.scheduled("* * * * *", queue="nightly")
@DBOS.workflow()
def with_default(scheduled_time: datetime, actual_time: datetime, retries: int = 3) -> None:
    pass


@scheduled("* * * * *", mode="exactly_once_per_interval")  # the module's own decorator
@DBOS.workflow()
def from_module(scheduled_time: datetime, actual_time: datetime) -> bytes:
    return b""


assert_type(nightly(now, now), int)
assert_type(nightly(scheduled_time=now, actual_time=now), int)  # names are kept
assert_type(with_default(now, now, retries=1), None)
assert_type(from_module(now, now), bytes)
nightly(now)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
nightly("2024-01-01", now)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def call_async() -> None:
    assert_type(await every_five_seconds(now, now), str)


mode: ScheduleMode = "when_active"
DBOS.scheduled("* * * * *", mode=mode)


# --- rejected -----------------------------------------------------------------------------


@DBOS.scheduled("* * * * *")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportUntypedFunctionDecorator]
@DBOS.workflow()
def no_times() -> None:
    pass


@DBOS.scheduled("* * * * *")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportUntypedFunctionDecorator]
@DBOS.workflow()
def wrong_types(scheduled_time: str, actual_time: str) -> None:
    pass


@DBOS.scheduled("* * * * *")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportUntypedFunctionDecorator]
@DBOS.workflow()
def needs_more(scheduled_time: datetime, actual_time: datetime, key: str) -> None:
    pass


DBOS.scheduled("* * * * *", mode="sometimes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
DBOS.scheduled("* * * * *", queue=3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
DBOS.scheduled("* * * * *", "when_active")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
