"""What both conformance suites share: the skip tag, the server check, declared capabilities."""

import os
from collections.abc import Callable
from typing import TypeVar

import pytest

from ._ds_kit import NotSupported

T = TypeVar("T")

SKIP_TAG = "[dbos-sdk conformance]"
"""Starts the reason of every check a suite skips (the pytest plugin ``pytest_dbos_sdk``
sums them up; it keeps its own copy of this text so as to import nothing at load)."""

_REACHABILITY = pytest.StashKey[dict[str, str | None]]()
"""Per kit factory, whether its server answered (asked once per session)."""


def require_server(
    request: pytest.FixtureRequest, factory: str, unreachable: Callable[[], str | None]
) -> None:
    """Skip the check loudly when the kit's server is unreachable, or fail it when the
    ``CI`` environment variable is set or pytest runs with ``--dbos-require-servers``."""
    known = request.config.stash.setdefault(_REACHABILITY, {})
    if factory not in known:
        known[factory] = unreachable()
    reason = known[factory]
    if reason is None:
        return
    message = f"{SKIP_TAG} the server of {factory} is unreachable: {' '.join(reason.split())}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so this fails instead of skipping)", pytrace=False)
    if request.config.getoption("dbos_require_servers", default=False):
        pytest.fail(f"{message} (--dbos-require-servers is given)", pytrace=False)
    pytest.skip(message)


def supported(kit: object, answer: T | NotSupported, what: str) -> T:
    """``answer``, or skip the check with the kit's declared reason (a declaration without
    a reason fails the check: nothing is skipped silently)."""
    if isinstance(answer, NotSupported):
        if not answer.reason.strip():
            raise AssertionError(f"{kit!r} declares {what} NotSupported, without a reason")
        pytest.skip(f"{SKIP_TAG} {type(kit).__name__} does not support {what}: {answer.reason}")
    return answer
