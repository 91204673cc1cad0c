"""Typetests: dbos_pgnotify_receive keeps workflow signatures and rejects bad settings.

Checked (never run) by mypy --strict and pyright strict; negative lines carry both
checkers' ignore comments (TYPING.md §4.2).
"""

from collections.abc import Mapping
from typing import Any, assert_type

from dbos_pgnotify_receive import ChangeMode, PgChangeReceiver
from dbos_sdk import DBOS, DBOSLifecycleCallback

changes = PgChangeReceiver("orders", "postgresql://app@db:5432/shop")


@changes.on_change(table="public.orders", key_columns=["id"], version_column="version")
@DBOS.workflow()
def on_order(record: dict[str, Any]) -> int:
    return int(record["id"])


@changes.on_change(
    table="orders",
    key_columns=("tenant", "id"),
    version_column="updated_at",
    mode="poll",
    poll_interval=0.5,
    queue="changes",
)
@DBOS.workflow(name="orders.async")
async def on_order_async(record: dict[str, Any], *, dry_run: bool = False) -> str:
    return str(record)


# A workflow taking any Mapping accepts the record dict too.
@changes.on_change(table="items", key_columns=["sku"], version_column="v", mode="notify")
@DBOS.workflow()
def on_item(record: Mapping[str, object]) -> None:
    return None


def calls() -> None:
    assert_type(on_order({"id": 1}), int)
    assert_type(on_item({}), None)
    on_order(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    on_order({"id": 1}, 2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    assert_type(changes.install_trigger_sql(table="orders", key_columns=["id"]), str)
    assert_type(changes.install_trigger(table="orders", key_columns=["id"]), None)
    mode: ChangeMode = "both"
    del mode
    callback: DBOSLifecycleCallback = changes
    del callback


async def async_calls() -> None:
    assert_type(await on_order_async({}), str)
    assert_type(await on_order_async({}, dry_run=True), str)
    await on_order_async({}, True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


# --- bad settings are rejected ----------------------------------------------------------


def bad_settings() -> None:
    # A bare string is not a list of key columns.
    changes.on_change(table="t", key_columns="id", version_column="v")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    changes.on_change(table="t", key_columns=["id"], version_column="v", mode="sometimes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    changes.on_change(table="t", key_columns=["id"], version_column="v", poll_interval="5")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    changes.on_change(table="t", key_columns=["id"])  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    changes.on_change(table="t", key_columns=["id"], version_column="v", polling=True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    changes.on_change("t", ["id"], "v")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    changes.install_trigger_sql(table="t", key_columns="id")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    PgChangeReceiver("r", "postgresql://h/db", batch_size="10")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    PgChangeReceiver("r")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


# A workflow that does not take the record is rejected at the decorator.
@changes.on_change(table="t", key_columns=["id"], version_column="v")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportUntypedFunctionDecorator]
@DBOS.workflow()
def takes_an_int(x: int) -> None: ...


@changes.on_change(table="t", key_columns=["id"], version_column="v")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportUntypedFunctionDecorator]
@DBOS.workflow()
def takes_two(record: dict[str, Any], extra: int) -> None: ...
