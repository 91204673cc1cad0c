"""Test set-up: beartype on every package of this repository, and database fixtures.

beartype is turned on here, before anything imports the SDK, so that production never
pays for it (see TYPING.md §5). pytest runs with -W error::...BeartypeClawDecorWarning,
so a callable beartype cannot check fails the run instead of going unchecked.
"""

from beartype import BeartypeConf
from beartype.claw import beartype_package

_BEARTYPE = BeartypeConf(claw_is_pep526=False, is_pep484_tower=True)
for _package in (
    "dbos_sdk",
    "dbos_psycopg_datasource",
    "dbos_sqlalchemy_datasource",
    "dbos_sqlite_datasource",
    "dbos_mariadb_datasource",
    "dbos_pgnotify_receive",
    "dbos_asgi_serve",
    "dbos_nats_receive",
    "dbos_rabbitmq_receive",
    "dbos_sdk_demo",
):
    beartype_package(_package, conf=_BEARTYPE)

import os  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Generator  # noqa: E402
from pathlib import Path  # noqa: E402

import psycopg  # noqa: E402
import pytest  # noqa: E402

from dbos_sdk import DBOS, DBOSConfig  # noqa: E402
from dbos_sdk.testing import isolated_registry  # noqa: E402

PG_URL = os.environ.get("DBOS_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
_pg_error: str | None = None


def _check_postgres() -> str | None:
    try:
        psycopg.connect(PG_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        return str(exc).strip()
    return None


def pytest_configure(config: pytest.Config) -> None:
    global _pg_error
    _pg_error = _check_postgres()
    if _pg_error is not None:
        banner = "!" * 78
        msg = (
            f"\n{banner}\nPOSTGRES IS NOT REACHABLE at {PG_URL}: {_pg_error}\n"
            "Every Postgres test will be SKIPPED"
            + (" -- and, because CI is set, FAIL." if os.environ.get("CI") else ".")
            + f"\n{banner}\n"
        )
        config.issue_config_time_warning(pytest.PytestWarning(msg), stacklevel=2)
        print(msg)


def require_postgres() -> str:
    """The test database URL; skips (fails under CI) when Postgres is not reachable."""
    if _pg_error is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and Postgres is not reachable at {PG_URL}: {_pg_error}")
        pytest.skip(f"Postgres is not reachable at {PG_URL}: {_pg_error}")
    return PG_URL


@pytest.fixture
def pg_url() -> str:
    return require_postgres()


@pytest.fixture
def pg_schema(pg_url: str) -> Generator[str, None, None]:
    """A fresh, empty Postgres schema for one test's system database, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    DBOS.shutdown(workflow_timeout_s=2)  # first: a launched runtime still polls these tables
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


ConfigFactory = Callable[..., DBOSConfig]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_config(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> ConfigFactory:
    """Build a DBOSConfig on the test's backend: a fresh SQLite file or Postgres schema."""
    if backend == "postgres":
        schema = request.getfixturevalue("pg_schema")
        url = request.getfixturevalue("pg_url")

        def pg(**kw: object) -> DBOSConfig:
            return DBOSConfig("test-app", system_database_url=url, postgres_schema=schema, **kw)  # type: ignore[arg-type]

        return pg

    def lite(**kw: object) -> DBOSConfig:
        return DBOSConfig(
            "test-app",
            system_database_url=f"sqlite:///{tmp_path}/sys.sqlite",
            **kw,  # type: ignore[arg-type]
        )

    return lite


@pytest.fixture
def dbos(make_config: ConfigFactory) -> Generator[DBOS, None, None]:
    """A configured (not yet launched) runtime, shut down after the test."""
    inst = DBOS(make_config())
    yield inst
    DBOS.shutdown(workflow_timeout_s=2)


@pytest.fixture(autouse=True)
def _isolated_registry() -> Generator[None, None, None]:
    """Every test starts from the registrations made at import time and leaves none of its
    own behind (a receiver left registered would run at every later launch)."""
    with isolated_registry():
        yield
