"""dbos-sdk: durable workflows on Postgres or SQLite, with a typed plugin architecture."""

from dbos_sdk._config import DBOSConfig
from dbos_sdk._context import SetWorkflowID, SetWorkflowOptions
from dbos_sdk._dbos import DBOS
from dbos_sdk._handles import WorkflowHandle, WorkflowHandleAsync
from dbos_sdk._instances import DBOSConfiguredInstance
from dbos_sdk._queue import Queue, QueueRateLimit
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
from dbos_sdk._serialization import JSONSerializer, PickleSerializer, Serializer
from dbos_sdk._status import StepInfo, WorkflowStatus
from dbos_sdk.errors import (
    DBOSConfigurationError,
    DBOSConflictingWorkflowError,
    DBOSDatabaseConnectionError,
    DBOSError,
    DBOSMaxRecoveryAttemptsExceededError,
    DBOSMaxStepRetriesExceededError,
    DBOSNonDeterministicError,
    DBOSNonExistentWorkflowError,
    DBOSNotAuthorizedError,
    DBOSNotLaunchedError,
    DBOSNotRegisteredError,
    DBOSQueueError,
    DBOSRecordedError,
    DBOSRegistrationError,
    DBOSSchemaVersionError,
    DBOSSerializationError,
    DBOSWorkflowCancelledError,
)

__all__ = [
    "DBOS",
    "DBOSConfig",
    "DBOSExternalState",
    "DBOSLaunchError",
    "DBOSLifecycleCallback",
    "ExternalRegistration",
    "MethodRegistration",
    "ParamInfo",
    "ReceiverRegistry",
    "StartWorkflowOptions",
    "DBOSConfigurationError",
    "DBOSConfiguredInstance",
    "DBOSConflictingWorkflowError",
    "DBOSDatabaseConnectionError",
    "DBOSError",
    "DBOSMaxRecoveryAttemptsExceededError",
    "DBOSMaxStepRetriesExceededError",
    "DBOSNonDeterministicError",
    "DBOSNonExistentWorkflowError",
    "DBOSNotAuthorizedError",
    "DBOSNotLaunchedError",
    "DBOSNotRegisteredError",
    "DBOSQueueError",
    "DBOSRecordedError",
    "DBOSRegistrationError",
    "DBOSSchemaVersionError",
    "DBOSSerializationError",
    "DBOSWorkflowCancelledError",
    "JSONSerializer",
    "PickleSerializer",
    "Queue",
    "QueueRateLimit",
    "Serializer",
    "SetWorkflowID",
    "SetWorkflowOptions",
    "StepInfo",
    "WorkflowHandle",
    "WorkflowHandleAsync",
    "WorkflowStatus",
]
