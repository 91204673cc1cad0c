"""The statics on DBOS that event-receiver authors use (also exported by dbos_sdk.receiver)."""


class ReceiverAPI:
    """Mixed into DBOS: lifecycle callbacks, associations, dispatch state, scheduling."""
