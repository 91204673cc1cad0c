"""The exception hierarchy of dbos-sdk.

Every error a user can cause is a subclass of :class:`DBOSError` whose message names the
function, setting or record involved and says what to do next.
"""


class DBOSError(Exception):
    """Root of every error raised by dbos-sdk."""


class DBOSConfigurationError(DBOSError):
    """A setting in :class:`dbos_sdk.DBOSConfig` (or a plugin's configuration) is invalid."""


class DBOSDatabaseConnectionError(DBOSError):
    """A database named in the configuration could not be reached."""


class DBOSSchemaVersionError(DBOSError):
    """The system database was migrated by a newer dbos-sdk than the one running."""


class DBOSNotLaunchedError(DBOSError):
    """An operation needs a launched runtime: call ``DBOS(config)`` and ``DBOS.launch()`` first."""


class DBOSRegistrationError(DBOSError):
    """A function, datasource, receiver or association was registered wrongly or too late."""


class DBOSNotRegisteredError(DBOSError):
    """A function that is not a registered DBOS workflow was given where one is required."""


class DBOSSerializationError(DBOSError):
    """A workflow or step input, output or error could not be serialized or deserialized."""


class DBOSNonExistentWorkflowError(DBOSError):
    """No workflow with the given ID exists in the system database."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"No workflow with ID {workflow_id!r} exists in the system database; "
            "check the ID (DBOS.list_workflows() lists the known ones)."
        )
        self.workflow_id = workflow_id


class DBOSConflictingWorkflowError(DBOSError):
    """A workflow ID is already used by a different workflow function."""


class DBOSNonDeterministicError(DBOSError):
    """On replay, a workflow called a different step than the one recorded at that position."""


class DBOSWorkflowCancelledError(DBOSError):
    """The workflow was cancelled (explicitly, or because its timeout or deadline passed)."""

    def __init__(self, workflow_id: str, reason: str = "it was cancelled") -> None:
        super().__init__(
            f"Workflow {workflow_id!r} did not finish because {reason}; "
            "DBOS.resume_workflow() runs it again from its last completed step."
        )
        self.workflow_id = workflow_id


class DBOSMaxRecoveryAttemptsExceededError(DBOSError):
    """A workflow was recovered more times than ``DBOSConfig.max_recovery_attempts`` allows."""


class DBOSMaxStepRetriesExceededError(DBOSError):
    """A step with ``retries_allowed=True`` failed on every one of its attempts."""

    def __init__(self, step_name: str, attempts: int, errors: list[BaseException]) -> None:
        last = errors[-1] if errors else None
        super().__init__(
            f"Step {step_name!r} failed {attempts} times (max_attempts={attempts}); last error: "
            f"{type(last).__name__}: {last}. Raise max_attempts or fix the cause."
        )
        self.step_name = step_name
        self.attempts = attempts
        self.errors = errors

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.step_name, self.attempts, self.errors))


class DBOSQueueError(DBOSError):
    """A queue was declared or used wrongly (unknown name, invalid limits)."""


class DBOSNotAuthorizedError(DBOSError):
    """The authenticated roles do not include one that the function requires."""


class DBOSRecordedError(DBOSError):
    """Stands in for a recorded exception that cannot be rebuilt in this process.

    The original type's name and message are kept in ``type_name`` and ``message``.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.type_name, self.message))


class DBOSLaunchError(DBOSError):
    """DBOS.launch() failed because a registered receiver (lifecycle callback) could not
    initialize; the message names the receiver and the setting at fault."""


class DBOSDataSourceError(DBOSError):
    """Root of the errors a datasource raises about its own use (see dbos_sdk.datasource)."""


class DBOSNotInTransactionError(DBOSDataSourceError):
    """A datasource's ``client`` was read outside one of its transactions."""


class DBOSNestedTransactionError(DBOSDataSourceError):
    """A transaction was called inside a step or inside another transaction; call it from
    the workflow instead (a step or transaction is one checkpointed unit)."""


class DBOSCheckpointSchemaError(DBOSDataSourceError):
    """A datasource's transaction-completion table is missing (or unusable) and could not be
    created; the message names the table and the helper or SQL that creates it."""


class DBOSTransactionRetriesExceededError(DBOSDataSourceError):
    """A transaction kept failing with retriable errors (serialization failure, deadlock,
    lost connection) until its datasource's retry bound (attempts or total time) was hit."""

    def __init__(self, name: str, attempts: int, elapsed_s: float, last_error: str) -> None:
        super().__init__(
            f"Transaction {name!r} failed with a retriable error on each of {attempts} "
            f"attempts over {elapsed_s:.3f}s; the last was {last_error}. Reduce contention, or "
            "raise the datasource's retry bound (retry=TransactionRetryPolicy(max_attempts=..., "
            "max_elapsed_s=...))."
        )
        self.name = name
        self.attempts = attempts
        self.elapsed_s = elapsed_s
        self.last_error = last_error

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.name, self.attempts, self.elapsed_s, self.last_error))
