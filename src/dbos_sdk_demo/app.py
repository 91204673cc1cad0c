"""The demo's application: a small shop written on dbos-sdk as any app would be.

- ``process_order``, a workflow of checkpointed steps, one of which (``record_order``) is a
  transaction on the app's own SQLite database through the ``dbos_sqlite_datasource``
  plugin: the order row and the step's completion checkpoint commit together;
- ``tick``, a workflow the scheduler runs every 2 seconds, exactly once per interval: the
  ticks that fall due while no process runs the app run once at the next launch.

``dbos-sdk demo`` runs this module in child processes (``python -m dbos_sdk_demo``),
configured through ``$DBOS_SDK_DEMO_APP``. Every step and tick prints an event line, so
that the parent can narrate what ran in which process and kill it at the right moment.
Importing this module configures DBOS and registers the app: only the app process does.
"""

import os
import sqlite3
import sys
import time
import uuid
from datetime import datetime
from typing import Final, TypedDict

from dbos_sdk import DBOS, DBOSConfig, SetWorkflowID
from dbos_sqlite_datasource import SQLiteDataSource

from ._protocol import RECORD_ORDER, TICK_EVERY_S, AppSettings, emit

STEP_SECONDS: Final = 0.25
"""How long each step pretends to work, so that the narration can be followed."""
PAUSE_SECONDS: Final = 60.0
"""How long the app waits in the step it is told to pause in, for the parent to kill it."""
RESULT_TIMEOUT_S: Final = 60.0
TICK_CRON: Final = f"*/{TICK_EVERY_S} * * * * *"
"""Six fields, seconds first: every 2 seconds."""
ORDER_CENTS: Final = 4200

settings: Final[AppSettings] = AppSettings.from_env()

DBOS(
    DBOSConfig(
        "dbos-sdk-demo",
        system_database_url=settings.system_database_url,
        postgres_schema=settings.schema,
        executor_id=settings.executor_id,  # at launch, DBOS recovers this executor's work
    )
)
orders_db: Final[SQLiteDataSource] = SQLiteDataSource("orders", settings.orders_db)

ORDERS_TABLE_SQL: Final = """CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    payment_ref TEXT NOT NULL,
    recorded_by_pid INTEGER NOT NULL
)"""
"""No key on ``order_id``, on purpose: a transaction run twice would show as two rows."""


class Receipt(TypedDict):
    """What a step returns, and the system database records. ``pid`` is the process that
    ran the step: it tells a replayed step (old pid) from one that ran again (new pid)."""

    what: str
    ref: str
    pid: int


class TickRecord(TypedDict):
    """What a tick returns: when it was due, when it started (ISO, UTC), and where."""

    scheduled: str
    actual: str
    pid: int


def _receipt(what: str, ref: str) -> Receipt:
    return {"what": what, "ref": ref, "pid": os.getpid()}


def _new_ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6].upper()}"


def step_begins(name: str, what: str) -> None:
    """Tell the parent this step runs (in this process); pause here if told to; then
    pretend to work for a moment. Called first thing in every step of the demo."""
    step = DBOS.step_id
    workflow_id = DBOS.workflow_id or ""
    emit("step", workflow_id=workflow_id, step=step, name=name, what=what)
    if workflow_id == settings.workflow_id and step == settings.pause_at_step:
        emit("paused", workflow_id=workflow_id, step=step)
        time.sleep(PAUSE_SECONDS)  # the parent kills this process during this sleep
    time.sleep(STEP_SECONDS)


# --- the order workflow ----------------------------------------------------------------


@DBOS.step(name="demo.reserve_inventory")
def reserve_inventory(order_id: str) -> Receipt:
    """Reserve the order's items (pretend)."""
    step_begins("reserve_inventory", f"reserve 2 widgets for {order_id}")
    return _receipt("reserved 2 widgets", _new_ref("RES"))


@DBOS.step(name="demo.charge_payment")
def charge_payment(order_id: str, amount_cents: int) -> Receipt:
    """Charge the customer (pretend)."""
    step_begins("charge_payment", f"charge ${amount_cents / 100:.2f} to the customer's card")
    return _receipt(f"charged {amount_cents} cents", _new_ref("PAY"))


@orders_db.transaction(name=RECORD_ORDER)
def record_order(order_id: str, amount_cents: int, payment_ref: str) -> Receipt:
    """A transaction: its INSERT and its completion checkpoint commit together, so it takes
    effect exactly once even if the process dies right after the commit."""
    step_begins("record_order", f"INSERT {order_id} into the orders table (SQLite transaction)")
    cursor = orders_db.client.execute(
        "INSERT INTO orders (order_id, amount_cents, payment_ref, recorded_by_pid) "
        "VALUES (?, ?, ?, ?)",
        (order_id, amount_cents, payment_ref, os.getpid()),
    )
    return _receipt("order row inserted", f"ORD-{cursor.lastrowid}")


@DBOS.step(name="demo.ship_order")
def ship_order(order_id: str, reservation: str) -> Receipt:
    """Hand the parcel to the carrier (pretend)."""
    step_begins("ship_order", f"hand the parcel for {reservation} to the carrier")
    return _receipt("parcel handed to the carrier", _new_ref("TRK"))


@DBOS.step(name="demo.notify_customer")
def notify_customer(order_id: str, tracking: str) -> Receipt:
    """Email the customer (pretend)."""
    step_begins("notify_customer", f"email tracking number {tracking} to the customer")
    return _receipt("customer emailed", _new_ref("MAIL"))


@DBOS.workflow(name="demo.process_order")
def process_order(order_id: str) -> str:
    """The order workflow. Its body runs again on recovery; its checkpointed steps do not."""
    reservation = reserve_inventory(order_id)
    payment = charge_payment(order_id, ORDER_CENTS)
    order = record_order(order_id, ORDER_CENTS, payment["ref"])
    shipment = ship_order(order_id, reservation["ref"])
    notify_customer(order_id, shipment["ref"])
    return (
        f"{order_id} fulfilled: {reservation['ref']}, {payment['ref']}, {order['ref']}, "
        f"{shipment['ref']}, customer notified"
    )


# --- the schedule -------------------------------------------------------------------------


@DBOS.scheduled(TICK_CRON, mode="exactly_once_per_interval")
@DBOS.workflow(name=settings.tick_workflow)
def tick(scheduled_time: datetime, actual_time: datetime) -> TickRecord:
    """Runs for every tick of TICK_CRON, under the workflow ID
    ``sched-<name>-<scheduled time>``; missed ticks run once, late, at the next launch."""
    scheduled, actual = scheduled_time.isoformat(), actual_time.isoformat()
    emit("tick", workflow_id=DBOS.workflow_id or "", scheduled=scheduled, actual=actual)
    return {"scheduled": scheduled, "actual": actual, "pid": os.getpid()}


# --- the app process ----------------------------------------------------------------------


def create_orders_table() -> None:
    """The app's own migration, before launch: recovery may run ``record_order`` at once."""
    with sqlite3.connect(settings.orders_db) as conn:
        conn.execute(ORDERS_TABLE_SQL)
    conn.close()


def main() -> int:
    """Launch (which recovers this executor's pending workflows and starts the schedule),
    start the order workflow if told to, print its result, then serve the schedule until
    stdin closes (the parent's signal to stop)."""
    create_orders_table()
    DBOS.launch()
    emit("launched")
    try:
        if settings.start:
            with SetWorkflowID(settings.workflow_id):
                handle = DBOS.start_workflow(process_order, settings.order_id)
            result = handle.get_result(timeout=RESULT_TIMEOUT_S)
        else:  # DBOS.launch() has already started recovering it
            result = DBOS.retrieve_workflow(settings.workflow_id).get_result(
                timeout=RESULT_TIMEOUT_S
            )
        emit("result", workflow_id=settings.workflow_id, result=str(result))
        sys.stdin.read()
    finally:
        DBOS.shutdown()
    return 0
