"""PgChangeReceiver: registration (before launch) and the DBOS lifecycle."""

from collections.abc import Callable
from typing import Any, TypeVar

import psycopg

from dbos_pgnotify_receive import _sql
from dbos_pgnotify_receive._config import (
    ChangeMode,
    ChangeSubscription,
    channel_name,
    check_key_columns,
    make_subscription,
    redact,
    split_table,
)
from dbos_pgnotify_receive._watcher import Target, Watcher
from dbos_sdk import DBOS, DBOSConfigurationError, DBOSLifecycleCallback, ReceiverRegistry

RecordWorkflow = TypeVar("RecordWorkflow", bound=Callable[[dict[str, Any]], object])
"""A workflow (sync or async) whose first parameter takes the changed record."""


def _no_info() -> None:
    return None


def _new_subscriptions() -> list[ChangeSubscription]:
    return []


class PgChangeReceiver(DBOSLifecycleCallback):
    """Starts a DBOS workflow for every insert or update of watched Postgres tables.

    Each record version starts one workflow, whose ID is derived from the receiver, the
    function, the table, the record's key and its version: a change seen twice (by NOTIFY
    and by polling, or again after a crash) starts nothing new. Progress is kept in the
    DBOS dispatch state (service = this receiver's name; one key per table and workflow),
    advanced only after the workflow was durably started, so a launch after downtime
    catches up on every change made meanwhile.

    ``url`` is the database holding the watched tables (libpq URL). Construct the
    receiver and decorate workflows before ``DBOS.launch()``; it connects at launch
    (failing the launch with a message naming the receiver, the function and the setting
    when something is wrong) and disconnects at shutdown.

    Records are delivered in version order within one poll; notifications arrive in
    commit order. The version column must grow with every change of a record, and a
    record committed with a *lower* version than one already dispatched (two concurrent
    transactions committing out of order) may be missed by polling: prefer a version set
    at commit time, or mode "both".
    """

    name: str
    url: str
    connect_timeout: float
    batch_size: int

    def __init__(
        self, name: str, url: str, *, connect_timeout: float = 5.0, batch_size: int = 100
    ) -> None:
        where = f"PgChangeReceiver({name!r})"
        if not name.strip():
            raise DBOSConfigurationError(f"{where}: name must be a non-empty string.")
        if not url.startswith(("postgresql://", "postgres://")):
            raise DBOSConfigurationError(
                f"{where}: url={url!r} is not a Postgres URL; write "
                "postgresql://user:password@host:5432/database."
            )
        if connect_timeout <= 0:
            raise DBOSConfigurationError(
                f"{where}: connect_timeout={connect_timeout!r} must be a positive number of "
                "seconds."
            )
        if batch_size < 1:
            raise DBOSConfigurationError(f"{where}: batch_size={batch_size!r} must be >= 1.")
        self.name = name
        self.url = url
        self.connect_timeout = connect_timeout
        self.batch_size = batch_size
        self._registry = ReceiverRegistry(
            f"pgnotify:{name}",
            class_info=_no_info,
            method_info=_new_subscriptions,
            param_info=_no_info,
        )
        self._registered = False
        self._watcher: Watcher | None = None

    def __repr__(self) -> str:
        return f"PgChangeReceiver({self.name!r}, {redact(self.url)!r})"

    # --- registration ---------------------------------------------------------------------

    def on_change(
        self,
        *,
        table: str,
        key_columns: list[str] | tuple[str, ...],
        version_column: str,
        mode: ChangeMode = "both",
        poll_interval: float = 5.0,
        install_trigger: bool = False,
        queue: str | None = None,
    ) -> Callable[[RecordWorkflow], RecordWorkflow]:
        """Start the decorated workflow with each changed record of ``table`` (a dict of
        column name to value). Place it above ``@DBOS.workflow()``.

        ``table`` is ``"name"`` or ``"schema.name"``; ``key_columns`` identify a record;
        ``version_column`` (integer or timestamp) grows with every change. ``mode`` picks
        NOTIFY ("notify"; needs the trigger, see ``install_trigger_sql``), polling every
        ``poll_interval`` seconds ("poll"), or both. ``install_trigger=True`` installs the
        trigger at launch; without it, launch fails if the trigger is missing and prints
        its SQL. ``queue`` enqueues the workflows on that DBOS queue. Settings are checked
        here (DBOSConfigurationError); the table and columns at launch.
        """

        def decorate(func: RecordWorkflow) -> RecordWorkflow:
            sub = make_subscription(
                receiver=self.name,
                function=getattr(func, "__qualname__", repr(func)),
                table=table,
                key_columns=key_columns,
                version_column=version_column,
                mode=mode,
                poll_interval=poll_interval,
                install_trigger=install_trigger,
                queue=queue,
            )
            self._register()
            subs = DBOS.associate_function_with_info(self._registry, func)
            if any(s.qualified_table == sub.qualified_table for s in subs):
                raise DBOSConfigurationError(
                    f"PgChangeReceiver {self.name!r}: function {sub.function!r} already "
                    f"watches table {sub.qualified_table!r}; decorate it once per table."
                )
            subs.append(sub)
            return func

        return decorate

    def _register(self) -> None:
        if not self._registered:
            DBOS.register_lifecycle_callback(self)
            self._registered = True

    # --- triggers ------------------------------------------------------------------------

    def install_trigger_sql(self, *, table: str, key_columns: list[str] | tuple[str, ...]) -> str:
        """The SQL that installs the NOTIFY trigger that modes "notify" and "both" need
        (for a deploy script; ``install_trigger`` runs it). Running it again replaces it."""
        schema, name, keys = self._trigger_target(table, key_columns)
        statement = _sql.trigger_statement(schema, name, keys, channel_name(schema, name, keys))
        return statement.as_string(None)

    def install_trigger(self, *, table: str, key_columns: list[str] | tuple[str, ...]) -> None:
        """Install (or replace) the NOTIFY trigger on ``table`` now, connecting to ``url``."""
        schema, name, keys = self._trigger_target(table, key_columns)
        statement = _sql.trigger_statement(schema, name, keys, channel_name(schema, name, keys))
        timeout = max(2, round(self.connect_timeout))
        with psycopg.connect(self.url, connect_timeout=timeout) as conn:
            conn.execute(statement)

    def _trigger_target(
        self, table: str, key_columns: list[str] | tuple[str, ...]
    ) -> tuple[str | None, str, tuple[str, ...]]:
        where = f"PgChangeReceiver {self.name!r}, install_trigger"
        schema, name = split_table(table, where)
        return schema, name, check_key_columns(key_columns, where)

    # --- lifecycle -------------------------------------------------------------------------

    def initialize(self) -> None:
        """At launch: connect, check each table, its columns and trigger, then catch up
        from the dispatch state and start listening/polling on a background thread."""
        targets: list[Target] = []
        for reg in DBOS.get_associated_info(self._registry):
            for sub in reg.method_config:
                if reg.method_reg.kind != "workflow":
                    raise DBOSConfigurationError(
                        f"PgChangeReceiver {self.name!r}: function {sub.function!r} is not a "
                        "DBOS workflow; place @on_change above @DBOS.workflow()."
                    )
                targets.append(Target(sub=sub, method=reg.method_reg))
        if not targets:
            return
        watcher = Watcher(self.name, self.url, self.connect_timeout, self.batch_size, targets)
        watcher.open()
        watcher.start()
        self._watcher = watcher

    def destroy(self) -> None:
        """At shutdown: stop the thread and close the connections."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()

    def log_registered_endpoints(self) -> None:
        """One line per watched table and workflow."""
        for reg in DBOS.get_associated_info(self._registry):
            for sub in reg.method_config:
                DBOS.logger.info(
                    "PgChangeReceiver %r: %s <- changes of %s (key %s, version %s, mode %s)",
                    self.name,
                    reg.method_reg.name,
                    sub.qualified_table,
                    ", ".join(sub.key_columns),
                    sub.version_column,
                    sub.mode,
                )
