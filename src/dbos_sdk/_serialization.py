"""How inputs, outputs and errors are stored in the system database.

The default serializer is pickle (base64 text). Pickle can rebuild any Python object, which
is why workflows may take and return arbitrary values, but it also means that **anyone
who can write to the system database can make this process execute code of their
choosing** when it recovers a workflow. Protect the system database as you protect the
application's code, or configure :class:`JSONSerializer`, which cannot execute code but
only carries JSON values.
"""

import base64
import json
import pickle
from typing import Any, Protocol, cast, runtime_checkable

from dbos_sdk.errors import DBOSRecordedError, DBOSSerializationError


@runtime_checkable
class Serializer(Protocol):
    """Turns values into text for the system database and back."""

    @property
    def name(self) -> str:
        """Recorded next to every value, so that a value is read back with its own format."""
        ...

    def serialize(self, value: object) -> str:
        """Return ``value`` as text; raise on a value this format cannot carry."""
        ...

    def deserialize(self, text: str) -> Any:
        """Rebuild the value that :meth:`serialize` turned into ``text``."""
        ...


class PickleSerializer:
    """The default: pickle, base64-encoded. Trusts the system database (see module doc)."""

    name: str = "pickle"

    def serialize(self, value: object) -> str:
        """Pickle ``value`` (highest protocol) and encode it as base64 text."""
        return base64.b64encode(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)).decode()

    def deserialize(self, text: str) -> Any:
        """Unpickle: executes whatever the text says (see the module's security note)."""
        return pickle.loads(base64.b64decode(text))


class JSONSerializer:
    """JSON values only; cannot execute code. Errors are stored as type name and message."""

    name: str = "json"

    def serialize(self, value: object) -> str:
        """``value`` as JSON; an exception as its type name and message."""
        if isinstance(value, BaseException):
            return json.dumps({"__dbos_error__": [type(value).__name__, str(value)]})
        return json.dumps(value)

    def deserialize(self, text: str) -> Any:
        """The JSON value; a recorded exception comes back as DBOSRecordedError."""
        value: Any = json.loads(text)
        marker = _error_marker(value)
        if marker is not None:
            return DBOSRecordedError(marker[0], marker[1])
        return value


def _error_marker(value: object) -> list[str] | None:
    if isinstance(value, dict) and "__dbos_error__" in value:
        return cast("dict[str, list[str]]", value)["__dbos_error__"]
    return None


def serialize_value(serializer: Serializer, value: object, what: str) -> str:
    """Serialize ``value``; ``what`` names it ("the arguments of workflow 'f'") in the error."""
    try:
        return serializer.serialize(value)
    except Exception as exc:
        raise DBOSSerializationError(
            f"Cannot serialize {what} with the {serializer.name!r} serializer: "
            f"{type(exc).__name__}: {exc}. Pass values that serializer supports, or configure "
            "another one in DBOSConfig(serializer=...)."
        ) from exc


def serialize_error(serializer: Serializer, exc: BaseException) -> str:
    """Serialize an exception; one that cannot be serialized is kept as type name and message."""
    try:
        text = serializer.serialize(exc)
        serializer.deserialize(text)  # an exception that pickles but cannot be rebuilt
        return text
    except Exception:
        return serializer.serialize(DBOSRecordedError(type(exc).__qualname__, str(exc)))


def deserialize_value(serializer: Serializer, text: str, what: str) -> Any:
    """Deserialize ``text``, naming ``what`` in the error."""
    try:
        return serializer.deserialize(text)
    except Exception as exc:
        raise DBOSSerializationError(
            f"Cannot deserialize {what} with the {serializer.name!r} serializer: "
            f"{type(exc).__name__}: {exc}. Was it written with another serializer, or does its "
            "class no longer exist?"
        ) from exc
