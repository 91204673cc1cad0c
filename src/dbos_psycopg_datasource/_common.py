"""What the sync and async psycopg datasources share: the config and small helpers."""

import attrs
import psycopg
from psycopg import IsolationLevel
from psycopg.conninfo import conninfo_to_dict

from dbos_sdk.datasource import PGIsolationLevel, PGTransactionConfig


@attrs.frozen(kw_only=True)
class PsycopgTransactionConfig(PGTransactionConfig):
    """Per-call config of a psycopg transaction: ``isolation_level`` (default
    SERIALIZABLE) and ``read_only`` (``BEGIN ... READ ONLY``; no checkpoint written)."""


ISOLATION: dict[PGIsolationLevel, IsolationLevel] = {
    PGIsolationLevel.READ_COMMITTED: IsolationLevel.READ_COMMITTED,
    PGIsolationLevel.REPEATABLE_READ: IsolationLevel.REPEATABLE_READ,
    PGIsolationLevel.SERIALIZABLE: IsolationLevel.SERIALIZABLE,
}


def describe_url(url: str) -> str:
    """``host:port/dbname`` of a connection string, without credentials, for messages."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<an unparsable connection string>"
    host = info.get("host") or "localhost"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}"
