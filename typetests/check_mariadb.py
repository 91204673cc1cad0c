"""Typetests: the MariaDB datasource keeps transaction signatures, types its client as
PyMySQL's concrete ``Connection`` and rejects every other datasource's config.

Checked (never run) by mypy --strict and pyright strict. Positive cases assert on call
results; negative lines carry both checkers' ignore comments (TYPING.md §4.2).
"""

import sqlite3
from collections.abc import Callable
from typing import Any, assert_type

import pymysql
from pymysql.connections import Connection
from pymysql.cursors import Cursor, DictCursor

from dbos_mariadb_datasource import (
    MariaDBDataSource,
    MariaDBIsolationLevel,
    MariaDBTransactionConfig,
    get_mariadb_error_code,
    is_mariadb_retriable_error,
)
from dbos_psycopg_datasource import PsycopgTransactionConfig
from dbos_sdk.datasource import (
    DataSourceTransactionHandler,
    DBOSDataSource,
    PGIsolationLevel,
    TransactionConfig,
    register_transaction,
)
from dbos_sqlite_datasource import SQLiteTransactionConfig

maria = MariaDBDataSource("maria", "mariadb://app:secret@127.0.0.1:3306/shop")
maria_kw = MariaDBDataSource(
    "maria-kw",
    {"host": "127.0.0.1", "user": "app", "database": "shop"},
    database="dbos",
    pool_size=4,
)

CFG = MariaDBTransactionConfig(isolation_level=MariaDBIsolationLevel.READ_COMMITTED)
RO = MariaDBTransactionConfig(read_only=True)

# --- client is PyMySQL's concrete Connection (default tuple cursor) ----------------------

assert_type(maria.client, Connection[Cursor])
assert_type(maria.client, pymysql.connections.Connection)
assert_type(maria.client.cursor(), Cursor)
assert_type(maria.client.cursor(DictCursor), DictCursor)
with maria.client.cursor() as _cur:
    assert_type(_cur.fetchall(), tuple[tuple[Any, ...], ...])
_dict_client: Connection[DictCursor] = maria.client  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
_sqlite_client: sqlite3.Connection = maria.client  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]

# --- decorated transactions keep their exact signatures ----------------------------------


@maria.transaction()
def add_order(order_id: str, qty: int = 1, *, note: str | None = None) -> int:
    with maria.client.cursor() as cur:
        cur.execute("INSERT INTO orders VALUES (%s, %s)", (order_id, qty))
    return qty


@maria.transaction(RO, name="orders.count")
def count_orders(prefix: bytes) -> list[str]:
    return []


assert_type(add_order("a"), int)
assert_type(add_order("a", 2, note="n"), int)
assert_type(count_orders(b"x"), list[str])
add_order(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
add_order("a", note=3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
add_order("a", nope=1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
count_orders()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


def plain(x: int, *, y: str = "") -> tuple[int, str]:
    return (x, y)


registered = maria.register_transaction(plain, name="plain", config=CFG)
assert_type(registered(1, y="z"), tuple[int, str])
registered("1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
assert_type(maria.run_transaction(lambda: 3, name="three"), int)
assert_type(maria.run_transaction(lambda: "x", name="x", config=RO), str)
assert_type(register_transaction("maria", plain)(2), tuple[int, str])


class Shop:
    def __init__(self) -> None:
        self.n = 0

    @maria.transaction()
    def restock(self, sku: str, qty: int) -> int:
        return qty


assert_type(Shop().restock("s", 1), int)
Shop().restock("s", "1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

# --- another datasource's config (or the base config) is rejected -------------------------

PG_CFG = PsycopgTransactionConfig(isolation_level=PGIsolationLevel.SERIALIZABLE)


@maria.transaction(PG_CFG)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def with_pg_config() -> None: ...


@maria.transaction(SQLiteTransactionConfig())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def with_sqlite_config() -> None: ...


@maria.transaction(TransactionConfig())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def with_base_config() -> None: ...


maria.run_transaction(lambda: 1, name="n", config=PG_CFG)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
maria.register_transaction(plain, config=SQLiteTransactionConfig())  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
MariaDBTransactionConfig(isolation_level=PGIsolationLevel.SERIALIZABLE)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
MariaDBTransactionConfig(isolation_level="SERIALIZABLE")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
CFG.read_only = True  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
MariaDBDataSource("bad", 3306)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

# --- an async function is rejected by this sync-only datasource ---------------------------


async def async_body() -> int:
    return 1


maria.register_transaction(async_body)  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]
_ = maria.run_transaction(async_body, name="n")  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]

# --- it satisfies the plugin Protocols, with the right variance ----------------------------

h: DataSourceTransactionHandler[Connection[Cursor]] = maria
h_obj: DataSourceTransactionHandler[object] = maria  # covariant client
h_wrong: DataSourceTransactionHandler[sqlite3.Connection] = maria  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
d: DBOSDataSource[MariaDBTransactionConfig] = maria
d_cross: DBOSDataSource[PsycopgTransactionConfig] = maria  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
d_base: DBOSDataSource[TransactionConfig] = maria  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


def use_generic(ds: DBOSDataSource[MariaDBTransactionConfig], f: Callable[[int], str]) -> str:
    return ds.register_transaction(f, config=CFG)(1)


# --- the error helpers --------------------------------------------------------------------

assert_type(get_mariadb_error_code(ValueError()), int | None)
assert_type(is_mariadb_retriable_error(ValueError()), bool)
