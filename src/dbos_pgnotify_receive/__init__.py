"""dbos-pgnotify-receive: start DBOS workflows from Postgres table changes.

Watch a table through a NOTIFY trigger, by polling a version column, or both; each
record version starts exactly one workflow, and a launch after downtime catches up on
the changes made meanwhile::

    changes = PgChangeReceiver("orders", "postgresql://app@db:5432/shop")

    @changes.on_change(table="public.orders", key_columns=["id"], version_column="version")
    @DBOS.workflow()
    def on_order(record: dict[str, Any]) -> None: ...

Built on the public receiver API of dbos_sdk only.
"""

from dbos_pgnotify_receive._config import ChangeMode, ChangeSubscription
from dbos_pgnotify_receive._receiver import PgChangeReceiver, RecordWorkflow

__all__ = ["ChangeMode", "ChangeSubscription", "PgChangeReceiver", "RecordWorkflow"]
