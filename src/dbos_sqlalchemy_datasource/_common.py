"""What the Session and AsyncSession datasources share."""

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import attrs
import psycopg
from sqlalchemy import URL, Connection, Engine, event, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from dbos_sdk.datasource import PGTransactionConfig
from dbos_sdk.errors import (
    DBOSConfigurationError,
    DBOSDatabaseConnectionError,
    DBOSNotLaunchedError,
)


@attrs.frozen(kw_only=True)
class SQLAlchemyTransactionConfig(PGTransactionConfig):
    """Per-call config of a SQLAlchemy transaction: ``isolation_level`` (default
    SERIALIZABLE) and ``read_only`` (``BEGIN ... READ ONLY``; no checkpoint written)."""


def psycopg_url(name: str, url: str) -> URL:
    """``url`` with the psycopg 3 driver (the only one this datasource runs on)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DBOSConfigurationError(f"SQLAlchemyDataSource({name!r}): {exc}") from exc
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() not in (
        "psycopg",
        "psycopg2",  # the default driver name of a bare postgresql:// URL
    ):
        raise DBOSConfigurationError(
            f"SQLAlchemyDataSource({name!r}) runs on PostgreSQL through psycopg 3; give a "
            f"postgresql:// or postgresql+psycopg:// URL, not {parsed.drivername}://."
        )
    return parsed.set(drivername="postgresql+psycopg")


E = TypeVar("E", Engine, AsyncEngine)


class EngineSlot(Generic[E]):
    """The engine a SQLAlchemy datasource runs on: one it creates from a URL at launch and
    disposes of at shutdown, or one it was given (used, never disposed)."""

    def __init__(
        self,
        name: str,
        url: str | E,
        pool_size: int,
        engine_kwargs: Mapping[str, Any] | None,
    ) -> None:
        self.url = psycopg_url(name, url) if isinstance(url, str) else None
        self.given: E | None = None if isinstance(url, str) else url
        self.current: E | None = None
        self.kwargs = {"pool_size": pool_size, **(engine_kwargs or {})}

    def require(self, owner: object) -> E:
        """The engine between launch and shutdown; a named error elsewhere."""
        if self.current is None:
            raise DBOSNotLaunchedError(
                f"{owner!r} is not open: its transactions run between DBOS.launch() and "
                "DBOS.shutdown()."
            )
        return self.current

    def open(self, create: Callable[..., E]) -> None:
        """At launch: take the given engine, or create one with ``create``."""
        if self.given is not None:
            self.current = self.given
        else:
            assert self.url is not None
            self.current = create(self.url, **self.kwargs)

    def close(self) -> E | None:
        """At shutdown: forget the engine; return it if the datasource created it (the
        caller disposes of it)."""
        engine = self.current
        self.current = None
        return None if engine is None or engine is self.given else engine

    def any_or_temporary(self, create: Callable[..., E]) -> tuple[E, bool]:
        """The open or given engine, or a temporary one (True: dispose of it after use),
        for work that may run before launch."""
        engine = self.current or self.given
        if engine is not None:
            return engine, False
        assert self.url is not None
        return create(self.url, poolclass=NullPool), True

    def connection_error(self, owner: object, exc: OperationalError) -> DBOSDatabaseConnectionError:
        """The error launch raises when the database cannot be reached."""
        url = self.url or (self.given.url if self.given is not None else None)
        where = url.render_as_string(hide_password=True) if url is not None else "<no URL>"
        return DBOSDatabaseConnectionError(
            f"{owner!r} cannot connect to {where}: {exc.orig}. Check the URL and that the "
            "server is up."
        )


def raw_connection(dbapi: object, name: str) -> "psycopg.Connection[Any]":
    if not isinstance(dbapi, psycopg.Connection):
        raise DBOSConfigurationError(
            f"SQLAlchemyDataSource({name!r}) needs an engine on the psycopg 3 driver "
            f"(postgresql+psycopg://); its connections are {type(dbapi).__name__}."
        )
    return dbapi  # pyright: ignore[reportUnknownVariableType]


def raw_async_connection(dbapi: object, name: str) -> "psycopg.AsyncConnection[Any]":
    if not isinstance(dbapi, psycopg.AsyncConnection):
        raise DBOSConfigurationError(
            f"AsyncSQLAlchemyDataSource({name!r}) needs an async engine on the psycopg 3 driver "
            f"(postgresql+psycopg://); its connections are {type(dbapi).__name__}."
        )
    return dbapi  # pyright: ignore[reportUnknownVariableType]


DRIVER_CONNECTION = "dbos_driver_connection"
"""Key, in ``Session.info``, of the transaction's psycopg connection (found once, when the
transaction begins)."""


def driver_of_async(conn: object, name: str) -> "psycopg.AsyncConnection[Any]":
    """The psycopg connection under a connected SQLAlchemy ``AsyncConnection``, found
    without a round trip through the greenlet bridge. (``conn`` is typed ``object``: beartype
    reads ``AsyncConnection``'s ``Awaitable`` base as a deprecated typing hint and warns.)"""
    sync_connection = getattr(conn, "sync_connection", None)
    proxied = getattr(sync_connection, "connection", None)
    adapted = getattr(proxied, "dbapi_connection", None)
    return raw_async_connection(getattr(adapted, "driver_connection", adapted), name)


def pending_orm_changes(session: Any) -> bool:
    """Whether the session has objects to flush (skipping an empty flush saves a call into
    the ORM, and for an AsyncSession a trip through the greenlet bridge)."""
    return bool(session.new or session.dirty or session.deleted)


# --- beginning a transaction on the function's first statement ---------------------------

_BEGIN_WITH = "dbos_begin_with"
"""Key, in ``Session.info``: (isolation level, read-only, datasource name, driver check) of
the transaction the session is for."""
_RESTORE = "dbos_restore"
"""Key, in ``Session.info``: the connection's (isolation level, read-only) before the
transaction changed them, or None if it did not."""

Settings = tuple[psycopg.IsolationLevel | None, bool | None]


class TransactionSession(Session):
    """The (sync face of the) session of one transaction: it begins on the function's first
    statement, flush, or at commit, and its after_begin hook (:func:`_configure_connection`)
    configures the connection then. Opening a transaction therefore checks nothing out."""


def begin_with(
    session: Session,
    config: SQLAlchemyTransactionConfig,
    name: str,
    driver: Callable[[object, str], "psycopg.Connection[Any] | psycopg.AsyncConnection[Any]"],
) -> None:
    """Say how ``session`` (a :class:`TransactionSession`) is to begin its transaction;
    ``driver`` (:func:`raw_connection` or :func:`raw_async_connection`) checks the psycopg
    connection under the engine's connection and names the datasource when it is not one."""
    isolation = psycopg.IsolationLevel[config.isolation_level.name]
    session.info[_BEGIN_WITH] = (isolation, config.read_only, name, driver)


@event.listens_for(TransactionSession, "after_begin")
def _configure_connection(session: Session, transaction: object, connection: Connection) -> None:
    """Give the connection the transaction's isolation level and read-only flag before
    psycopg sends BEGIN (it does so with the first statement), and note how to put it back.
    For an async engine this runs inside the greenlet of that first statement, where the
    adapted connection's setters may await the driver."""
    del transaction
    isolation, read_only, name, driver = session.info[_BEGIN_WITH]
    adapted: Any = connection.connection.dbapi_connection
    raw = driver(getattr(adapted, "driver_connection", adapted), name)
    was: Settings = (raw.isolation_level, raw.read_only)
    if was[0] != isolation:
        adapted.set_isolation_level(isolation)
    if was[1] != read_only:
        adapted.set_read_only(read_only)
    session.info[DRIVER_CONNECTION] = raw
    session.info.setdefault(_RESTORE, was if was != (isolation, read_only) else None)


def settings_to_restore(session: Session) -> Settings | None:
    """The settings to put back on the transaction's connection (once), or None."""
    was: Settings | None = session.info.pop(_RESTORE, None)
    return was
