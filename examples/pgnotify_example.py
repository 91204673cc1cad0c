"""Postgres changes to durable workflows: one workflow per order version.

    python examples/pgnotify_example.py      # needs Postgres (DATABASE_URL)

Creates ``pgnotify_example.orders`` (if missing), watches it by NOTIFY and by polling, and
inserts an order and updates another. Each record version starts one workflow, under an
ID made of the receiver, the workflow, the table, the key and the version. Run it again:
the orders seen before start nothing new (their IDs exist, and the dispatch state in
schema ``pgnotify_example_dbos`` says where to resume), while the new rows are caught up
at launch. To print the trigger SQL for a deploy script instead of installing it::

    python examples/pgnotify_example.py --print-trigger-sql
"""

import os
import sys
import time
from typing import Any

import psycopg

from dbos_pgnotify_receive import PgChangeReceiver
from dbos_sdk import DBOS, DBOSConfig

URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
TABLE = "pgnotify_example.orders"

changes = PgChangeReceiver("orders-feed", URL)


@DBOS.step()
def notify_warehouse(order_id: int, item: str) -> str:
    print(f"  shipping order {order_id}: {item}")
    return f"shipped-{order_id}"


@changes.on_change(
    table=TABLE,
    key_columns=["id"],
    version_column="version",
    mode="both",  # NOTIFY for latency, polling every 2 s as a safety net
    poll_interval=2.0,
    install_trigger=True,  # or apply install_trigger_sql(...) yourself
)
@DBOS.workflow()
def on_order(record: dict[str, Any]) -> str:
    """Runs once per (order, version), with the record as read from the table."""
    return notify_warehouse(record["id"], record["item"])


def prepare_table() -> int:
    """Create the example table; return the next free order ID."""
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS pgnotify_example")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (id int PRIMARY KEY, item text NOT NULL, "
            "version bigint NOT NULL)"
        )
        row = conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {TABLE}").fetchone()
        return int(row[0]) if row else 1


def main() -> None:
    if "--print-trigger-sql" in sys.argv:
        print(changes.install_trigger_sql(table=TABLE, key_columns=["id"]))
        return
    next_id = prepare_table()
    DBOS(
        DBOSConfig(
            "pgnotify_example", system_database_url=URL, postgres_schema="pgnotify_example_dbos"
        )
    )
    DBOS.launch()  # installs the trigger, catches up on rows changed while it was down
    try:
        with psycopg.connect(URL, autocommit=True) as conn:
            conn.execute(f"INSERT INTO {TABLE} VALUES (%s, 'teapot', 1)", (next_id,))
            conn.execute(
                f"UPDATE {TABLE} SET item = item || '+', version = version + 1 WHERE id = 1"
            )
        time.sleep(1.0)
        for status in DBOS.list_workflows(name=on_order.__qualname__):
            print(f"{status.workflow_id}: {status.status} -> {status.output!r}")
    finally:
        DBOS.shutdown()


if __name__ == "__main__":
    main()
