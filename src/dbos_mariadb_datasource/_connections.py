"""Connections of the MariaDB datasource: what to connect to, and a small bounded pool.

PyMySQL connections are not thread-safe, so a connection serves one transaction (one
thread) at a time: the pool hands each transaction its own and takes it back afterwards.
"""

import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql
from pymysql.connections import Connection

from dbos_sdk.errors import (
    DBOSConfigurationError,
    DBOSDatabaseConnectionError,
    DBOSNotLaunchedError,
)

_SCHEMES: Final = frozenset({"mariadb", "mysql", "mysql+pymysql", "mariadb+pymysql"})
_STR_OPTIONS: Final = frozenset({"charset", "unix_socket", "ssl_ca", "ssl_cert", "ssl_key"})
_FLOAT_OPTIONS: Final = frozenset({"connect_timeout", "read_timeout", "write_timeout"})
_MANAGED: Final = frozenset({"autocommit", "cursorclass", "defer_connect"})


class MariaDBPoolTimeoutError(DBOSDatabaseConnectionError):
    """Every connection of a MariaDB datasource's pool stayed in use for ``pool_timeout_s``.
    It is retriable: the transaction is tried again within the datasource's retry bound."""


def connect_kwargs(who: str, target: str | Mapping[str, Any]) -> dict[str, Any]:
    """``pymysql.connect`` keyword arguments from a ``mariadb://`` / ``mysql://`` URL or a
    mapping of such arguments (those the datasource manages itself are refused)."""
    if not isinstance(target, str):
        managed = sorted(_MANAGED & set(target))
        if managed:
            raise DBOSConfigurationError(
                f"{who}: the connect arguments {managed} are set by the datasource itself "
                "(connections are in autocommit mode between transactions and use the "
                "default tuple cursor; call client.cursor(DictCursor) for another); remove them."
            )
        return dict(target)
    parts = urlsplit(target)
    if parts.scheme not in _SCHEMES:
        raise DBOSConfigurationError(
            f"{who}: {describe(target)!r} is not a MariaDB URL; write "
            "mariadb://user:password@host:port/database (or mysql://...), or pass a mapping "
            "of pymysql.connect() arguments."
        )
    kwargs: dict[str, Any] = {
        "host": parts.hostname or "localhost",
        "port": parts.port or 3306,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else "",
    }
    database = unquote(parts.path.lstrip("/"))
    if database:
        kwargs["database"] = database
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _STR_OPTIONS:
            kwargs[key] = value
        elif key in _FLOAT_OPTIONS:
            try:
                kwargs[key] = float(value)
            except ValueError:
                raise DBOSConfigurationError(
                    f"{who}: URL option {key}={value!r} is not a number of seconds."
                ) from None
        else:
            known = ", ".join(sorted(_STR_OPTIONS | _FLOAT_OPTIONS))
            raise DBOSConfigurationError(
                f"{who}: unknown URL option {key!r} (known: {known}); pass a mapping of "
                "pymysql.connect() arguments for anything else."
            )
    return kwargs


def describe(target: str | Mapping[str, Any]) -> str:
    """``host:port/database`` of a URL or connect mapping, without credentials."""
    if isinstance(target, str):
        try:
            parts = urlsplit(target)
            host, port = parts.hostname or "localhost", parts.port or 3306
        except ValueError:
            return "<an unparsable URL>"
        return f"{host}:{port}/{unquote(parts.path.lstrip('/'))}"
    where = target.get("unix_socket") or (
        f"{target.get('host') or 'localhost'}:{target.get('port') or 3306}"
    )
    return f"{where}/{target.get('database') or ''}"


def open_connection(kwargs: Mapping[str, Any]) -> Connection:
    """A new connection in autocommit mode (the datasource's transactions are explicit)."""
    conn: Connection = pymysql.connect(**kwargs, autocommit=True)
    return conn


def in_transaction(conn: Connection) -> bool:
    """Whether the server reported an open transaction in its last reply on ``conn``
    (SERVER_STATUS_IN_TRANS; PyMySQL keeps the last status in ``server_status``)."""
    status: object = getattr(conn, "server_status", None)
    return isinstance(status, int) and bool(status & 1)


def close_quietly(conn: Connection) -> None:
    # Already closed, or the server is gone: there is nothing left to release.
    with contextlib.suppress(pymysql.err.Error):
        conn.close()


class ConnectionPool:
    """At most ``size`` connections, opened on demand; idle ones are kept for reuse.

    Made once per datasource and opened at each launch: a connection still in use when the
    pool closes is closed when it is given back, and its slot is freed then.
    """

    __slots__ = ("_closed", "_connect", "_idle", "_lock", "_slots", "_timeout_s", "_who")

    _connect: Callable[[], Connection]
    _idle: list[Connection]
    _slots: threading.BoundedSemaphore
    _lock: threading.Lock
    _closed: bool
    _timeout_s: float
    _who: str

    def __init__(
        self, connect: Callable[[], Connection], *, size: int, timeout_s: float, who: str
    ) -> None:
        self._connect = connect
        self._idle = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._closed = True
        self._timeout_s = timeout_s
        self._who = who

    def open(self) -> None:
        """Start lending connections (at launch)."""
        with self._lock:
            self._closed = False

    def take(self) -> Connection:
        """An idle connection, or a new one; waits up to ``timeout_s`` for a free slot."""
        self._check_open()
        if not self._slots.acquire(timeout=self._timeout_s):
            raise MariaDBPoolTimeoutError(
                f"{self._who}: every pooled connection stayed in use for {self._timeout_s}s; "
                "raise pool_size (the server's max_connections permitting) or shorten the "
                "transactions."
            )
        try:
            with self._lock:
                self._check_open()
                if self._idle:
                    return self._idle.pop()
            return self._connect()
        except BaseException:
            self._slots.release()
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise DBOSNotLaunchedError(
                f"{self._who} is not open: its transactions run between DBOS.launch() and "
                "DBOS.shutdown()."
            )

    def give_back(self, conn: Connection, *, discard: bool = False) -> None:
        """Return a connection taken with :meth:`take` (closed if broken or discarded)."""
        try:
            if not discard and conn.open:
                with self._lock:
                    if not self._closed:
                        self._idle.append(conn)
                        return
            close_quietly(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Close the idle connections; those in use are closed when given back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            close_quietly(conn)
