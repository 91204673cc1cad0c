"""The public API for event-receiver authors.

A receiver registers a :class:`DBOSLifecycleCallback` and associates its configuration
with functions before launch; at launch it connects, and for each event it starts a
workflow with an ID derived from the event's identity (so a redelivery starts nothing
new), acknowledging the event only once the start returned. Its progress lives in the
system database as :class:`DBOSExternalState`. The functions here are the statics of
the same names on :class:`dbos_sdk.DBOS`.
"""

from typing import Final

from dbos_sdk._dbos import DBOS
from dbos_sdk._receiver_api import DBOSLaunchError
from dbos_sdk._receiver_types import (
    DBOSExternalState,
    DBOSLifecycleCallback,
    ExternalRegistration,
    MethodRegistration,
    ParamInfo,
    ReceiverRegistry,
    StartWorkflowOptions,
)

register_lifecycle_callback: Final = DBOS.register_lifecycle_callback
associate_class_with_info: Final = DBOS.associate_class_with_info
associate_function_with_info: Final = DBOS.associate_function_with_info
associate_param_with_info: Final = DBOS.associate_param_with_info
get_associated_info: Final = DBOS.get_associated_info
get_registered_workflows: Final = DBOS.get_registered_workflows
get_registered_workflow_instances: Final = DBOS.get_registered_workflow_instances
start_workflow_registered: Final = DBOS.start_workflow_registered
start_workflow_registered_async: Final = DBOS.start_workflow_registered_async
upsert_event_dispatch_state: Final = DBOS.upsert_event_dispatch_state
get_event_dispatch_state: Final = DBOS.get_event_dispatch_state
with_authed_context: Final = DBOS.with_authed_context
with_authed_context_async: Final = DBOS.with_authed_context_async

__all__ = [
    "DBOSExternalState",
    "DBOSLaunchError",
    "DBOSLifecycleCallback",
    "ExternalRegistration",
    "MethodRegistration",
    "ParamInfo",
    "ReceiverRegistry",
    "StartWorkflowOptions",
    "associate_class_with_info",
    "associate_function_with_info",
    "associate_param_with_info",
    "get_associated_info",
    "get_event_dispatch_state",
    "get_registered_workflow_instances",
    "get_registered_workflows",
    "register_lifecycle_callback",
    "start_workflow_registered",
    "start_workflow_registered_async",
    "upsert_event_dispatch_state",
    "with_authed_context",
    "with_authed_context_async",
]
