"""The dbos-sdk pytest plugin, loaded through the ``pytest11`` entry point.

It is opt-in: nothing here acts unless a test uses it. It registers the
``dbos_conformance`` marker (carried by every check of
``dbos_sdk.testing.DataSourceConformance``), adds ``--dbos-require-servers`` (a conformance
check whose server is unreachable then fails instead of skipping, as it does when ``CI``
is set), sums up at the end of the run which conformance checks did not run and why, and
offers the ``dbos_isolated_registry`` fixture.

This module must not import ``dbos_sdk`` at import time: pytest imports entry-point
plugins before any ``conftest.py``, and a test suite that turns on beartype's import hook
for ``dbos_sdk`` in its ``conftest.py`` would then find the package imported already,
unchecked. ``dbos_sdk`` is imported only inside the fixture, when a test asks for it.

For the same reason it hands the distribution's other packages back to the ordinary
import system (:func:`_unmark_sibling_packages`).
"""

import importlib.metadata
import sys
from collections.abc import Generator

import pytest

MARKER = "dbos_conformance"
SKIP_TAG = "[dbos-sdk conformance]"
"""How the suite's skip reasons start (``dbos_sdk.testing`` uses the same text)."""


def _unmark_sibling_packages() -> None:
    """Undo pytest's assertion-rewrite marks on the packages that share this plugin's
    distribution (``dbos_sdk`` and its plugins), keeping this module's own.

    pytest marks *every* top-level package of a distribution that declares a ``pytest11``
    entry point for assertion rewriting, before any plugin is loaded; its import hook,
    first on ``sys.meta_path``, then loads them itself, and an import hook turned on later
    in a ``conftest.py`` (beartype's ``beartype_package("dbos_sdk")``) never sees them: the
    run would go unchecked, silently. Only the test code needs rewritten asserts, and
    ``dbos_sdk.testing`` gives its checks explicit messages. The marks live in a private
    set of pytest's hook; if that ever changes, this does nothing, and this repository's
    test of beartype (tests/test_testing_plugin.py) fails.
    """
    own = __name__.partition(".")[0]
    try:
        owners = importlib.metadata.packages_distributions()
    except Exception:  # a broken distribution on the path must not break pytest
        return
    dists = set(owners.get(own, []))
    siblings = {name for name, names in owners.items() if dists & set(names) and name != own}
    for finder in sys.meta_path:
        if type(finder).__name__ != "AssertionRewritingHook":
            continue
        marked: object = getattr(finder, "_must_rewrite", None)
        cache: object = getattr(finder, "_marked_for_rewrite_cache", None)
        if isinstance(marked, set) and isinstance(cache, dict):
            marked.difference_update(siblings)
            cache.clear()


_unmark_sibling_packages()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--dbos-require-servers``."""
    group = parser.getgroup("dbos-sdk")
    group.addoption(
        "--dbos-require-servers",
        action="store_true",
        default=False,
        dest="dbos_require_servers",
        help="dbos-sdk conformance checks whose database server is unreachable fail instead "
        "of skipping (also when the CI environment variable is set).",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``dbos_conformance`` marker."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}: a check of the dbos-sdk datasource conformance suite "
        "(dbos_sdk.testing.DataSourceConformance)",
    )


def _skip_reason(report: pytest.TestReport) -> str | None:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        _, tag, rest = reason.partition(SKIP_TAG)
        if tag:
            return rest.strip()
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the conformance checks that did not run, grouped by reason."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report, pytest.TestReport) and MARKER in report.keywords:
            reason = _skip_reason(report)
            if reason is not None:
                reasons[reason] = reasons.get(reason, 0) + 1
    if not reasons:
        return
    terminalreporter.write_sep("!", "dbos-sdk conformance checks that did NOT run", yellow=True)
    for reason, count in sorted(reasons.items()):
        terminalreporter.write_line(f"{count:4d} x {reason}")


@pytest.fixture
def dbos_isolated_registry() -> Generator[None]:
    """Registrations (workflows, queues, datasources, receivers) made by the test are
    forgotten when it ends, and a runtime it left launched is shut down first."""
    from dbos_sdk.testing import isolated_registry  # here, never at plugin import (see above)

    with isolated_registry():
        yield
