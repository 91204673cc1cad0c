"""What the MariaDB datasource's tests and their child processes share: the server to
use, a fresh pair of databases per test, and SQL run outside DBOS.

``DBOS_TEST_MARIADB_URL`` names the server (default ``mariadb://root@127.0.0.1:3306/test``);
each test gets its own application database (``<prefix>_app``, the datasource URL's) and
checkpoint database (``<prefix>_ck``, the datasource's ``database=``), dropped afterwards.
"""

import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql

from dbos_mariadb_datasource import (
    MARIADB_CHECKPOINT_TABLE,
    MariaDBDataSource,
    MariaDBIsolationLevel,
    MariaDBTransactionConfig,
    get_mariadb_error_code,
)
from dbos_sdk.datasource import TransactionCheckpoint, TransactionRetryPolicy
from dbos_sdk.testing import (
    ConflictCase,
    DataSourceKit,
    KitScratch,
    NotSupported,
    SettingsCase,
    Supported,
)

MARIA_URL = os.environ.get("DBOS_TEST_MARIADB_URL", "mariadb://root@127.0.0.1:3306/test")


def server_kwargs(url: str = MARIA_URL) -> dict[str, Any]:
    """``pymysql.connect`` arguments for the test server (no database selected)."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
    }


def check_server() -> str | None:
    """None if the test server answers, else why not."""
    try:
        pymysql.connect(**server_kwargs(), connect_timeout=3).close()
    except pymysql.err.Error as exc:
        return str(exc).strip()
    return None


@dataclass(frozen=True)
class MariaEnv:
    """A test's two fresh databases on the test server."""

    prefix: str

    @classmethod
    def create(cls) -> "MariaEnv":
        """A new pair of names, with the application database made (see :meth:`populate`)."""
        env = cls(f"dbt_{uuid.uuid4().hex[:12]}")
        env.populate()
        return env

    def populate(self) -> None:
        """Create the application database with its two tables: ``items`` (one text
        column) and ``counter`` (one row, ``id`` 1, ``n`` 0). The checkpoint database is
        left to the datasource."""
        self.run_sql(f"CREATE DATABASE `{self.app_db}`", database=None)
        self.run_sql("CREATE TABLE items (v VARCHAR(64)) ENGINE=InnoDB")
        self.run_sql("CREATE TABLE counter (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB")
        self.run_sql("INSERT INTO counter VALUES (1, 0)")

    @property
    def app_db(self) -> str:
        return f"{self.prefix}_app"

    @property
    def ck_db(self) -> str:
        return f"{self.prefix}_ck"

    @property
    def url(self) -> str:
        """The datasource URL: the test server, with the application database selected."""
        kw = server_kwargs()
        auth = kw["user"] + (f":{kw['password']}" if kw["password"] else "")
        return f"mariadb://{auth}@{kw['host']}:{kw['port']}/{self.app_db}"

    def drop(self) -> None:
        self.run_sql(f"DROP DATABASE IF EXISTS `{self.app_db}`", database=None)
        self.run_sql(f"DROP DATABASE IF EXISTS `{self.ck_db}`", database=None)

    def datasource(
        self, name: str, *, retry: Mapping[str, Any] | None = None, **options: Any
    ) -> MariaDBDataSource:
        """A datasource on the test's databases; ``retry`` holds TransactionRetryPolicy
        arguments."""
        policy = TransactionRetryPolicy(**retry) if retry is not None else None
        options.setdefault("database", self.ck_db)
        return MariaDBDataSource(name, self.url, retry=policy, **options)

    def connect(self, *, database: str | None = "") -> pymysql.connections.Connection:
        """A connection of the test's own (autocommit), outside DBOS."""
        db = self.app_db if database == "" else database
        return pymysql.connect(**server_kwargs(), database=db, autocommit=True)

    def run_sql(
        self, text: str, params: Sequence[Any] = (), *, database: str | None = ""
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a connection of its own and return its rows."""
        conn = self.connect(database=database)
        try:
            with conn.cursor() as cur:
                cur.execute(text, tuple(params) if params else None)
                return list(cur.fetchall())
        finally:
            conn.close()

    def checkpoints(self) -> list[tuple[Any, ...]]:
        """The completion table's rows (empty when it does not exist yet)."""
        try:
            rows = self.run_sql(
                "SELECT workflow_id, function_num, output, error, serialization "
                f"FROM `{self.ck_db}`.transaction_completion ORDER BY workflow_id, function_num"
            )
        except pymysql.err.ProgrammingError as exc:
            if get_mariadb_error_code(exc) in (1049, 1146):  # no such database, table
                return []
            raise
        return [(r[0].decode(), *r[1:]) for r in rows]

    def items(self) -> list[str]:
        return sorted(r[0] for r in self.run_sql("SELECT v FROM items"))


def execute(
    conn: pymysql.connections.Connection, text: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """Run ``text`` on ``conn`` (a transaction's client) and return the rows it fetched."""
    with conn.cursor() as cur:
        cur.execute(text, tuple(params) if params else None)
        return list(cur.fetchall())


# --- the conformance kit -------------------------------------------------------------------


class MariaDBKit(DataSourceKit[MariaDBDataSource]):
    """The MariaDB datasource's kit for ``dbos_sdk.testing.DataSourceConformance``: the
    scratch space is a pair of databases named after the scratch token."""

    env: MariaEnv

    def __init__(self, scratch: KitScratch) -> None:
        super().__init__(scratch)
        self.env = MariaEnv(scratch.token)

    # --- the server and the scratch space ---------------------------------------------------

    def unreachable(self) -> str | None:
        return check_server()

    def create_scratch(self) -> None:
        self.env.populate()

    def drop_scratch(self) -> None:
        self.env.drop()

    def committed_items(self) -> list[str]:
        return self.env.items()

    def committed_counter(self) -> int:
        return int(self.env.run_sql("SELECT n FROM counter WHERE id = 1")[0][0])

    def committed_checkpoints(self) -> list[TransactionCheckpoint]:
        return [
            TransactionCheckpoint(
                workflow_id=wfid, step_id=step, output=output, error=error, serialization=fmt
            )
            for wfid, step, output, error, fmt in self.env.checkpoints()
        ]

    # --- the datasource ------------------------------------------------------------------

    def make_datasource(
        self,
        name: str,
        *,
        retry: TransactionRetryPolicy | None = None,
        create_checkpoint_schema: bool = True,
    ) -> MariaDBDataSource:
        return MariaDBDataSource(
            name,
            self.env.url,
            database=self.env.ck_db,
            retry=retry,
            create_checkpoint_schema=create_checkpoint_schema,
        )

    def install_checkpoint_schema(self, ds: MariaDBDataSource) -> None:
        ds.install_checkpoint_schema()

    def schema_error_mentions(self) -> Sequence[str]:
        ck = self.env.ck_db
        return [
            f"`{ck}`.`{MARIADB_CHECKPOINT_TABLE}`",
            "install_checkpoint_schema()",
            f"create_transaction_completion_table_mariadb({ck!r})",
        ]

    def open_connections(self, ds: MariaDBDataSource) -> int:
        # The datasource's connections are the sessions whose default database is the
        # scratch application database (the kit's own are closed after each use).
        rows = self.env.run_sql(
            "SELECT count(*) FROM information_schema.processlist "
            "WHERE db = %s AND id <> CONNECTION_ID()",
            (self.env.app_db,),
            database=None,
        )
        return int(rows[0][0])

    def read_only_config(self) -> MariaDBTransactionConfig:
        return MariaDBTransactionConfig(read_only=True)

    def is_read_only_violation(self, error: BaseException) -> bool:
        return get_mariadb_error_code(error) == 1792  # cannot execute in a READ ONLY trx

    # --- capabilities -----------------------------------------------------------------------

    def settings_cases(self) -> Sequence[SettingsCase]:
        cases = [SettingsCase(label="default", config=None, expected=("SERIALIZABLE", False))]
        for level in MariaDBIsolationLevel:
            for ro in (False, True):
                cases.append(
                    SettingsCase(
                        label=f"{level.value}{' READ ONLY' if ro else ''}",
                        config=MariaDBTransactionConfig(isolation_level=level, read_only=ro),
                        expected=(level.value.replace(" ", "-"), ro),
                    )
                )
        return cases

    def conflicting_writes(self) -> ConflictCase:
        # SERIALIZABLE (the default) share-locks the read: both transactions then ask for
        # the row's exclusive lock, InnoDB breaks the deadlock (1213) and the victim reruns.
        return ConflictCase(config=None, total_attempts=3)

    def concurrent_write_transactions(self) -> Supported:
        return Supported()

    def connection_loss(self) -> Supported | NotSupported:
        return Supported()

    # --- inside a transaction ---------------------------------------------------------------

    def insert_item(self, ds: MariaDBDataSource, value: str) -> None:
        execute(ds.client, "INSERT INTO items (v) VALUES (%s)", (value,))

    def count_items(self, ds: MariaDBDataSource) -> int:
        return int(execute(ds.client, "SELECT count(*) FROM items")[0][0])

    def read_counter(self, ds: MariaDBDataSource) -> int:
        return int(execute(ds.client, "SELECT n FROM counter WHERE id = 1")[0][0])

    def write_counter(self, ds: MariaDBDataSource, value: int) -> None:
        execute(ds.client, "UPDATE counter SET n = %s WHERE id = 1", (value,))

    def raise_retriable_error(self, ds: MariaDBDataSource) -> None:
        execute(
            ds.client, "SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213, MESSAGE_TEXT = 'forced'"
        )

    def read_settings(self, ds: MariaDBDataSource) -> object:
        """The session's isolation level (which the transaction started with) and whether
        the server refuses a write (a no-op UPDATE: 1792 in a READ ONLY transaction)."""
        isolation = execute(ds.client, "SELECT @@tx_isolation")[0][0]
        try:
            execute(ds.client, "UPDATE counter SET n = n WHERE 1 = 0")
            read_only = False
        except pymysql.err.Error as exc:
            if get_mariadb_error_code(exc) != 1792:
                raise
            read_only = True
        return (isolation, read_only)

    def lose_connection(self, ds: MariaDBDataSource) -> None:
        """The server ends the transaction's session (KILL from another connection)."""
        session = int(execute(ds.client, "SELECT CONNECTION_ID()")[0][0])
        killer = self.env.connect(database=None)
        try:
            execute(killer, f"KILL CONNECTION {session}")
        finally:
            killer.close()
