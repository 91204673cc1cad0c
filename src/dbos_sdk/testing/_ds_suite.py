"""The datasource conformance suite: every guarantee of the method of operation, checked
against a real database through the author's kit.

Subclass :class:`DataSourceConformance` in a test module and name your kit factory::

    class TestMyDataSource(DataSourceConformance):
        kit_factory = "tests.my_kits:MyDataSourceKit"

Each ``test_*`` method is one check, named after what it proves; they live in two groups
(``_ds_checks_once``, ``_ds_checks_config``).
"""

import uuid
from collections.abc import Generator
from pathlib import Path
from typing import ClassVar

import pytest

from dbos_sdk import DBOS, DBOSConfig
from dbos_sdk._registry_scope import isolated_registry

from ._common import require_server
from ._ds_checks_config import ConfigAndLifecycleChecks
from ._ds_checks_once import ExactlyOnceChecks
from ._ds_harness import build_kit
from ._ds_kit import AnyDataSourceKit, KitScratch


class DataSourceConformance(ExactlyOnceChecks, ConfigAndLifecycleChecks):
    """The conformance suite of a datasource. Subclass it as ``Test<Something>`` in a test
    module and set :attr:`kit_factory`; pytest then runs every check against the kit's
    real database.

    Each check gets a fresh scratch space (the kit's ``create_scratch``), a DBOS runtime
    configured on a fresh SQLite system database (not launched), and a registry whose
    registrations are forgotten afterwards. When the kit's server is unreachable every
    check is skipped with the reason, or fails when the ``CI`` environment variable is set
    or pytest runs with ``--dbos-require-servers``.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.dbos_conformance]

    @pytest.fixture
    def kit(self, request: pytest.FixtureRequest, tmp_path: Path) -> Generator[AnyDataSourceKit]:
        """The kit on a fresh scratch space, with a configured (not launched) runtime."""
        path = type(self).kit_factory
        if not path:
            raise TypeError(
                f"{type(self).__name__} runs the datasource conformance suite but names no kit: "
                "set kit_factory = 'module:attribute' on the class."
            )
        scratch = KitScratch(directory=str(tmp_path), token=f"k{uuid.uuid4().hex[:12]}")
        kit = build_kit(path, scratch)
        require_server(request, path, kit.unreachable)
        with isolated_registry():
            kit.create_scratch()
            try:
                DBOS(
                    DBOSConfig(
                        "dbos-conformance",
                        system_database_url=f"sqlite:///{tmp_path}/dbos-conformance-sys.sqlite",
                    )
                )
                yield kit
            finally:
                DBOS.shutdown(workflow_timeout_s=2)
                kit.drop_scratch()
