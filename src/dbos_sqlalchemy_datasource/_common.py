"""What the Session and AsyncSession datasources share."""

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs
import psycopg
from sqlalchemy import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

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


@functools.cache
def _options(isolation_level: str, read_only: bool) -> Mapping[str, Any]:
    return MappingProxyType({"isolation_level": isolation_level, "postgresql_readonly": read_only})


def connection_options(config: SQLAlchemyTransactionConfig) -> Mapping[str, Any]:
    """Execution options that begin the transaction as ``config`` says (SQLAlchemy resets
    them when the connection goes back to the pool). One read-only mapping per setting,
    built once: opening a transaction builds no dict."""
    return _options(config.isolation_level.value, config.read_only)


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
"""Key, in ``Session.info``, of the transaction's psycopg connection (found once, at open)."""


def driver_of_async(conn: object, name: str) -> "psycopg.AsyncConnection[Any]":
    """The psycopg connection under a connected SQLAlchemy ``AsyncConnection``, found
    without a round trip through the greenlet bridge. (``conn`` is typed ``object``: beartype
    reads ``AsyncConnection``'s ``Awaitable`` base as a deprecated typing hint and warns.)"""
    sync_connection = getattr(conn, "sync_connection", None)
    proxied = getattr(sync_connection, "connection", None)
    adapted = getattr(proxied, "dbapi_connection", None)
    return raw_async_connection(getattr(adapted, "driver_connection", adapted), name)


def async_driver_of(conn: Connection, name: str) -> "psycopg.AsyncConnection[Any]":
    """The psycopg connection under the sync face of an async engine's connection (what
    ``AsyncSession.run_sync`` functions see), found without a round trip."""
    adapted = conn.connection.dbapi_connection
    return raw_async_connection(getattr(adapted, "driver_connection", adapted), name)


def pending_orm_changes(session: Any) -> bool:
    """Whether the session has objects to flush (skipping an empty flush saves a call into
    the ORM, and for an AsyncSession a trip through the greenlet bridge)."""
    return bool(session.new or session.dirty or session.deleted)
