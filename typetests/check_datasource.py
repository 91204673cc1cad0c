"""Typetests: datasources keep transaction signatures, type their client and their config.

Checked (never run) by mypy --strict and pyright strict. Positive cases assert on call
results; negative lines carry both checkers' ignore comments (TYPING.md §4.2).
"""

import sqlite3
from collections.abc import Callable
from typing import Any, assert_type

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from dbos_psycopg_datasource import (
    AsyncPsycopgDataSource,
    PsycopgDataSource,
    PsycopgTransactionConfig,
)
from dbos_sdk.datasource import (
    AsyncDataSourceTransactionHandler,
    AsyncDBOSDataSource,
    DataSourceTransactionHandler,
    DBOSDataSource,
    PGIsolationLevel,
    PGTransactionConfig,
    register_transaction,
    register_transaction_async,
    run_transaction,
    run_transaction_async,
)
from dbos_sqlalchemy_datasource import (
    AsyncSQLAlchemyDataSource,
    SQLAlchemyDataSource,
    SQLAlchemyTransactionConfig,
)
from dbos_sqlite_datasource import SQLiteBeginMode, SQLiteDataSource, SQLiteTransactionConfig

pg = PsycopgDataSource("pg", "postgresql://localhost/app")
apg = AsyncPsycopgDataSource("apg", "postgresql://localhost/app")
sa = SQLAlchemyDataSource("sa", "postgresql://localhost/app")
asa = AsyncSQLAlchemyDataSource("asa", "postgresql://localhost/app")
lite = SQLiteDataSource("lite", "app.sqlite")

PG_CFG = PsycopgTransactionConfig(isolation_level=PGIsolationLevel.SERIALIZABLE, read_only=False)
SA_CFG = SQLAlchemyTransactionConfig(isolation_level=PGIsolationLevel.READ_COMMITTED)
LITE_CFG = SQLiteTransactionConfig(begin_mode=SQLiteBeginMode.DEFERRED, read_only=True)

# --- client has the concrete type --------------------------------------------------------

assert_type(pg.client, psycopg.Connection[tuple[Any, ...]])
assert_type(apg.client, psycopg.AsyncConnection[tuple[Any, ...]])
assert_type(sa.client, Session)
assert_type(asa.client, AsyncSession)
assert_type(lite.client, sqlite3.Connection)

# --- transaction / register_transaction / run_transaction keep exact signatures ------


@pg.transaction()
def pg_insert(name: str, qty: int = 1, *, tag: str | None = None) -> int:
    return qty


@pg.transaction(PG_CFG, name="pg.read")
def pg_read(key: bytes) -> list[str]:
    return []


assert_type(pg_insert("a"), int)
assert_type(pg_insert("a", 2, tag="t"), int)
assert_type(pg_read(b"k"), list[str])
pg_insert(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
pg_insert("a", tag=3)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
pg_insert("a", nope=1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


def plain(x: int, *, y: str = "") -> tuple[int, str]:
    return (x, y)


registered = sa.register_transaction(plain, name="sa.plain", config=SA_CFG)
assert_type(registered(1, y="z"), tuple[int, str])
registered("1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
assert_type(lite.run_transaction(lambda: 3, name="lite.three"), int)
assert_type(lite.run_transaction(lambda: "x", name="n", config=LITE_CFG), str)
assert_type(register_transaction("pg", plain)(2), tuple[int, str])
assert_type(run_transaction(lambda: b"", name="n", ds_name="pg"), bytes)


@sa.transaction(SA_CFG)
def sa_method_like(session_id: int) -> Session:
    return sa.client


assert_type(sa_method_like(1), Session)


@apg.transaction()
async def apg_insert(name: str, *, qty: int = 1) -> int:
    return qty


@asa.transaction(SA_CFG, name="asa.read")
async def asa_read(key: str) -> dict[str, int]:
    return {key: 1}


async def plain_async(x: int) -> str:
    return str(x)


async def async_cases() -> None:
    assert_type(await apg_insert("a", qty=2), int)
    assert_type(await asa_read("k"), dict[str, int])
    reg = apg.register_transaction(plain_async, config=PG_CFG)
    assert_type(await reg(1), str)
    assert_type(await apg.run_transaction(lambda: plain_async(1), name="n"), str)
    assert_type(await register_transaction_async("apg", plain_async)(1), str)
    assert_type(await run_transaction_async(lambda: plain_async(2), name="n", ds_name="apg"), str)
    await apg_insert(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# --- another datasource's config is rejected ------------------------------------------


@pg.transaction(SA_CFG)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def pg_with_sa_config() -> None: ...


@sa.transaction(PG_CFG)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def sa_with_pg_config() -> None: ...


@lite.transaction(PG_CFG)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def lite_with_pg_config() -> None: ...


@pg.transaction(PGTransactionConfig())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def pg_with_base_config() -> None: ...


@apg.transaction(SA_CFG)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
async def apg_with_sa_config() -> None: ...


lite.run_transaction(lambda: 1, name="n", config=SA_CFG)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
sa.register_transaction(plain, config=LITE_CFG)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
PsycopgTransactionConfig(isolation_level="SERIALIZABLE")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
PG_CFG.read_only = True  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]

# --- an async function given to a sync-only datasource is rejected ---------------------


async def async_body() -> int:
    return 1


lite.register_transaction(async_body)  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]
pg.register_transaction(async_body)  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]
_ = lite.run_transaction(async_body, name="n")  # type: ignore[deprecated]  # pyright: ignore[reportDeprecated]


# pyright does not report a deprecated overload reached through __call__ (the decorator
# object's), so the decorator form is rejected by mypy here and at runtime by both.
@lite.transaction()  # type: ignore[deprecated]
async def lite_async() -> int:
    return 1


# A sync function given to an async datasource is an ordinary type error.
@apg.transaction()  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def apg_sync() -> int:
    return 1


# --- the concrete datasources satisfy the Protocols, with the right variance -------------

h_pg: DataSourceTransactionHandler[psycopg.Connection[tuple[Any, ...]]] = pg
h_sa: DataSourceTransactionHandler[Session] = sa
h_lite: DataSourceTransactionHandler[sqlite3.Connection] = lite
h_obj: DataSourceTransactionHandler[object] = lite  # covariant client
h_apg: AsyncDataSourceTransactionHandler[psycopg.AsyncConnection[tuple[Any, ...]]] = apg
h_asa: AsyncDataSourceTransactionHandler[AsyncSession] = asa
h_wrong: DataSourceTransactionHandler[Session] = lite  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
h_async_as_sync: DataSourceTransactionHandler[AsyncSession] = asa  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]

d_pg: DBOSDataSource[PsycopgTransactionConfig] = pg
d_sa: DBOSDataSource[SQLAlchemyTransactionConfig] = sa
d_lite: DBOSDataSource[SQLiteTransactionConfig] = lite
d_apg: AsyncDBOSDataSource[PsycopgTransactionConfig] = apg
d_asa: AsyncDBOSDataSource[SQLAlchemyTransactionConfig] = asa
d_cross: DBOSDataSource[SQLAlchemyTransactionConfig] = pg  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
d_base: DBOSDataSource[PGTransactionConfig] = pg  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


def use_generic(ds: DBOSDataSource[PsycopgTransactionConfig], f: Callable[[int], str]) -> str:
    return ds.register_transaction(f, config=PG_CFG)(1)
