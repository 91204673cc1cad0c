"""Test support for applications and plugin authors (needs pytest).

- :func:`isolated_registry`: registrations made inside the block are forgotten afterwards,
  so tests that register workflows, queues, datasources or receivers stay independent.
- The datasource conformance suite: implement a :class:`DataSourceKit` (or
  :class:`AsyncDataSourceKit`) for your datasource on a real server, then subclass
  :class:`DataSourceConformance` in a test module with ``kit_factory`` naming the kit.
  Every check -- exactly once across a SIGKILL between the datasource commit and the step
  record, duplicate executions, error replay, the retry bound, read-only, isolation
  settings, outside a workflow, lifecycle, the checkpoint-table check -- then runs
  against it. See docs/datasources.md, "Prove your datasource with the conformance suite".
- The receiver conformance suite: implement a :class:`ReceiverKit` for your event receiver
  and its real server, then subclass :class:`ReceiverConformance` with ``kit_factory``
  naming the kit: lifecycle order, association round trip, one workflow per event under
  an ID derived from it, redelivery (also after a SIGKILL between start and
  acknowledgement), dispatch-state rules. See docs/receivers.md, "Prove your receiver
  with the conformance suite".
"""

from dbos_sdk._registry_scope import isolated_registry
from dbos_sdk.testing._ds_kit import (
    AnyDataSourceKit,
    AsyncDataSourceKit,
    ConflictCase,
    DataSourceKit,
    KitFactory,
    KitScratch,
    NotSupported,
    SettingsCase,
    Supported,
)
from dbos_sdk.testing._ds_suite import DataSourceConformance
from dbos_sdk.testing._receiver_suite import ReceiverConformance
from dbos_sdk.testing._receivers import (
    Association,
    Binding,
    Delivery,
    DispatchStateRef,
    Misconfiguration,
    ReceiverKit,
    ReceiverKitFactory,
    TargetWorkflow,
)

__all__ = [
    "AnyDataSourceKit",
    "Association",
    "AsyncDataSourceKit",
    "Binding",
    "ConflictCase",
    "DataSourceConformance",
    "DataSourceKit",
    "Delivery",
    "DispatchStateRef",
    "KitFactory",
    "KitScratch",
    "Misconfiguration",
    "NotSupported",
    "ReceiverConformance",
    "ReceiverKit",
    "ReceiverKitFactory",
    "SettingsCase",
    "Supported",
    "TargetWorkflow",
    "isolated_registry",
]
