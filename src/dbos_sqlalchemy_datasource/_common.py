"""What the Session and AsyncSession datasources share."""

from collections.abc import Callable
from typing import Any

import attrs
import psycopg
from sqlalchemy import URL, Connection, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session

from dbos_sdk.datasource import PGTransactionConfig
from dbos_sdk.errors import DBOSConfigurationError


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
