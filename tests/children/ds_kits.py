"""One harness over the five datasources, so each behaviour is tested once for all.

A test describes a transaction as a list of actions (run SQL, call a hook, return, raise);
the kit turns it into a real sync or async transaction function of its datasource, which
reads ``ds.client`` like user code does. SQL is written with ``?`` placeholders and
``{items}``-style table names; the kit adapts both to its driver and schema.
"""

import asyncio
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa

from dbos_psycopg_datasource import (
    AsyncPsycopgDataSource,
    PsycopgDataSource,
    PsycopgTransactionConfig,
)
from dbos_sdk import DBOS
from dbos_sdk.datasource import PGIsolationLevel, TransactionRetryPolicy
from dbos_sqlalchemy_datasource import (
    AsyncSQLAlchemyDataSource,
    SQLAlchemyDataSource,
    SQLAlchemyTransactionConfig,
)
from dbos_sqlite_datasource import SQLiteBeginMode, SQLiteDataSource, SQLiteTransactionConfig

KINDS = ("psycopg", "psycopg-async", "sqlalchemy", "sqlalchemy-async", "sqlite")
PG_KINDS = tuple(k for k in KINDS if k != "sqlite")

Args = tuple[Any, ...]


@dataclass(frozen=True)
class Sql:
    """Run ``text`` (``?`` placeholders, ``{table}`` names) with ``params(args)``."""

    text: str
    params: Callable[[Args], Sequence[Any]] = lambda _args: ()


@dataclass(frozen=True)
class Hook:
    """Call ``fn(args)`` (a plain function; it may block: async kits run in threads)."""

    fn: Callable[[Args], None]


@dataclass(frozen=True)
class Result:
    """Return ``fn(rows, args)``; ``rows`` holds each Sql's fetched rows, in order."""

    fn: Callable[[list[list[tuple[Any, ...]]], Args], Any]


@dataclass(frozen=True)
class Fail:
    """Raise ``fn(args)``."""

    fn: Callable[[Args], BaseException]


Action = Sql | Hook | Result | Fail


@dataclass
class Kit:
    kind: str
    pg_url: str | None
    schema: str | None
    sqlite_path: str
    opened: list[Any] = field(default_factory=lambda: [])

    @property
    def is_async(self) -> bool:
        return self.kind.endswith("-async")

    @property
    def is_pg(self) -> bool:
        return self.kind != "sqlite"

    # --- datasources and configs -------------------------------------------------------

    def datasource(self, name: str, **options: Any) -> Any:
        retry = options.pop("retry", None)
        if retry is not None and not isinstance(retry, TransactionRetryPolicy):
            retry = TransactionRetryPolicy(**retry)
        if self.kind == "sqlite":
            return SQLiteDataSource(name, self.sqlite_path, retry=retry, **options)
        assert self.pg_url is not None and self.schema is not None
        cls: Any = {
            "psycopg": PsycopgDataSource,
            "psycopg-async": AsyncPsycopgDataSource,
            "sqlalchemy": SQLAlchemyDataSource,
            "sqlalchemy-async": AsyncSQLAlchemyDataSource,
        }[self.kind]
        options.setdefault("schema", self.schema)
        return cls(name, self.pg_url, retry=retry, **options)

    def config(
        self,
        *,
        read_only: bool = False,
        isolation: PGIsolationLevel | None = None,
        begin_mode: SQLiteBeginMode | None = None,
    ) -> Any:
        if self.kind == "sqlite":
            mode = begin_mode or SQLiteBeginMode.IMMEDIATE
            return SQLiteTransactionConfig(read_only=read_only, begin_mode=mode)
        level = isolation or PGIsolationLevel.SERIALIZABLE
        if self.kind.startswith("psycopg"):
            return PsycopgTransactionConfig(read_only=read_only, isolation_level=level)
        return SQLAlchemyTransactionConfig(read_only=read_only, isolation_level=level)

    # --- SQL dialects --------------------------------------------------------------------

    def table(self, name: str) -> str:
        return f'"{self.schema}".{name}' if self.is_pg else name

    def _render(self, text: str) -> str:
        names = {n: self.table(n) for n in re.findall(r"\{(\w+)\}", text)}
        text = text.format(**names)
        if self.kind.startswith("psycopg"):
            return text.replace("%", "%%").replace("?", "%s")
        if self.kind.startswith("sqlalchemy"):
            counter = iter(range(1000))
            return re.sub(r"\?", lambda _m: f":p{next(counter)}", text)
        return text

    def run_sql(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement outside DBOS, on a connection of its own, and commit."""
        rendered = self._render(text)
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.sqlite_path, timeout=10)
            try:
                cur = conn.execute(rendered, tuple(params))
                rows = cur.fetchall()
                conn.commit()
                return rows
            finally:
                conn.close()
        assert self.pg_url is not None
        with psycopg.connect(self.pg_url, autocommit=True) as conn:
            cur = conn.execute(self._render_psycopg(text), tuple(params))
            return cur.fetchall() if cur.description else []

    def _render_psycopg(self, text: str) -> str:
        names = {n: self.table(n) for n in re.findall(r"\{(\w+)\}", text)}
        return text.format(**names).replace("%", "%%").replace("?", "%s")

    # --- transactions and workflows ----------------------------------------------------

    def define(
        self, ds: Any, name: str, actions: Sequence[Action], config: Any = None
    ) -> Callable[..., Any]:
        """Register a transaction of ``ds`` that performs ``actions``."""
        steps = [(a, self._render(a.text)) if isinstance(a, Sql) else (a, "") for a in actions]
        kind = self.kind

        def params_of(action: Sql, args: Args) -> Any:
            values = tuple(action.params(args))
            if kind.startswith("sqlalchemy"):
                return {f"p{i}": v for i, v in enumerate(values)}
            return values

        if not self.is_async:

            def body(*args: Any) -> Any:
                rows: list[list[tuple[Any, ...]]] = []
                for action, text in steps:
                    if isinstance(action, Sql):
                        client = ds.client
                        if kind == "sqlalchemy":
                            res = client.execute(sa.text(text), params_of(action, args))
                            rows.append([tuple(r) for r in res] if res.returns_rows else [])
                        else:
                            cur = client.execute(text, params_of(action, args))
                            got = cur.fetchall() if cur.description else []
                            rows.append([tuple(r) for r in got])
                    elif isinstance(action, Hook):
                        action.fn(args)
                    elif isinstance(action, Result):
                        return action.fn(rows, args)
                    else:
                        raise action.fn(args)
                return None

            return ds.register_transaction(body, name=name, config=config)

        async def abody(*args: Any) -> Any:
            rows: list[list[tuple[Any, ...]]] = []
            for action, text in steps:
                if isinstance(action, Sql):
                    client = ds.client
                    if kind == "sqlalchemy-async":
                        res = await client.execute(sa.text(text), params_of(action, args))
                        rows.append([tuple(r) for r in res] if res.returns_rows else [])
                    else:
                        cur = await client.execute(text, params_of(action, args))
                        got = await cur.fetchall() if cur.description else []
                        rows.append([tuple(r) for r in got])
                elif isinstance(action, Hook):
                    action.fn(args)
                elif isinstance(action, Result):
                    return action.fn(rows, args)
                else:
                    raise action.fn(args)
            return None

        return ds.register_transaction(abody, name=name, config=config)

    def workflow(self, name: str, tx: Callable[..., Any]) -> Callable[..., Any]:
        """Register a workflow (sync or async, like the kit) that returns ``tx(*args)``."""
        if self.is_async:

            async def awf(*args: Any) -> Any:
                return await tx(*args)

            return DBOS.workflow(name=name)(awf)

        def wf(*args: Any) -> Any:
            return tx(*args)

        return DBOS.workflow(name=name)(wf)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a (sync or async) workflow or transaction and return its result."""
        if self.is_async:
            return asyncio.run(fn(*args))
        return fn(*args)
