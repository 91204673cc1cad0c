"""What the conformance checks share: the base class carrying ``kit_factory``, and small
helpers (explicit assertions, declared capabilities, common actions)."""

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from ._ds_harness import Db, Raise, Return
from ._ds_kit import AnyDataSourceKit


class ConformanceChecks:
    """Base of the groups of checks: what every group reads from the suite's class."""

    kit_factory: ClassVar[str] = ""
    """``"module:attribute"`` of the kit factory: a :class:`DataSourceKit` or
    :class:`AsyncDataSourceKit` subclass, or a function taking a :class:`KitScratch` and
    returning a kit. It must be importable in a child process started in the test's working
    directory with the test process's ``sys.path`` (the crash check rebuilds it there)."""


def check(condition: bool, message: str) -> None:
    """Fail the check with ``message`` unless ``condition``."""
    # Explicit, so the message says what went wrong without pytest's assertion rewriting
    # (which would take this package from beartype's import hook in this repository).
    if not condition:
        raise AssertionError(message)


def new_name() -> str:
    """A fresh datasource name."""
    return f"ds-{uuid.uuid4().hex[:8]}"


def eventually(probe: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Whether ``probe()`` becomes true within ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def insert_arg(kit: AnyDataSourceKit, ds: Any) -> Db:
    """Insert the transaction's first argument into ``items``."""
    return Db(lambda _r, a: kit.insert_item(ds, a[0]))


RETURN_ARG = Return(lambda _r, a: a[0])
"""Return the transaction's first argument."""


def ending(how: str) -> Return | Raise:
    """Return ``"from <arg>"`` (``how == "success"``) or raise ``ValueError("from <arg>")``."""
    if how == "success":
        return Return(lambda _r, a: f"from {a[0]}")
    return Raise(lambda a: ValueError(f"from {a[0]}"))


def run_crash_child(args: dict[str, Any]) -> "subprocess.CompletedProcess[str]":
    """Run the crash check's child process (``_ds_crash``) with ``args``."""
    return subprocess.run(
        [sys.executable, "-m", "dbos_sdk.testing._ds_crash", json.dumps(args)],
        cwd=os.getcwd(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
