"""DBOSConfig: the runtime's settings, validated once where they enter."""

import re
from typing import Any
from urllib.parse import urlsplit

import attrs

from dbos_sdk._serialization import PickleSerializer, Serializer
from dbos_sdk.errors import DBOSConfigurationError

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _check_name(_inst: object, _attr: object, value: str) -> None:
    if not _NAME_RE.match(value):
        raise DBOSConfigurationError(
            f"DBOSConfig(name={value!r}) is invalid: use letters, digits, '_', '.' or '-'."
        )


def _check_identifier(_inst: object, attr: Any, value: str) -> None:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", value):
        raise DBOSConfigurationError(
            f"DBOSConfig({attr.name}={value!r}) is not a plain SQL identifier: use letters, "
            "digits and '_', not starting with a digit."
        )


def _positive(_inst: object, attr: Any, value: float) -> None:
    if value <= 0:
        raise DBOSConfigurationError(f"DBOSConfig({attr.name}={value!r}) must be positive.")


@attrs.frozen
class DBOSConfig:
    """Settings of the runtime, given to ``DBOS(config)``.

    ``system_database_url`` selects the backend: ``sqlite:///relative/path.sqlite`` or
    ``sqlite:////absolute/path.sqlite`` (the default is ``sqlite:///<name>.sqlite``: one
    process), or ``postgresql://user:password@host:port/database`` (psycopg 3, pooled;
    many processes may share it).
    """

    name: str = attrs.field(validator=_check_name)
    system_database_url: str | None = attrs.field(default=None, kw_only=True)
    executor_id: str = attrs.field(default="local", kw_only=True)
    """Identifies this process among those sharing a system database: at launch each
    executor recovers only its own pending workflows, so give each process its own ID."""
    application_version: str = attrs.field(default="", kw_only=True)
    serializer: Serializer = attrs.field(factory=PickleSerializer, kw_only=True)
    max_executor_threads: int = attrs.field(default=64, validator=_positive, kw_only=True)
    """Threads that run synchronous workflows started in the background (queues, recovery)."""
    sys_db_pool_size: int = attrs.field(default=10, validator=_positive, kw_only=True)
    postgres_schema: str = attrs.field(default="dbos", kw_only=True, validator=_check_identifier)
    queue_poll_interval_s: float = attrs.field(default=1.0, validator=_positive, kw_only=True)
    """How often idle queues are polled for work enqueued by other processes."""
    max_recovery_attempts: int = attrs.field(default=100, validator=_positive, kw_only=True)

    @property
    def resolved_system_database_url(self) -> str:
        """The system database URL, with the SQLite default filled in."""
        return self.system_database_url or f"sqlite:///{self.name}.sqlite"


def parse_database_url(url: str, setting: str = "system_database_url") -> tuple[str, str]:
    """Return ``("sqlite", path)`` or ``("postgresql", conninfo)``; raise on anything else."""
    if url.startswith("sqlite://"):
        path = url[len("sqlite://") :]
        if not path.startswith("/") or path == "/":
            raise DBOSConfigurationError(
                f"{setting}={url!r} is malformed: write sqlite:///relative.sqlite or "
                "sqlite:////absolute/path.sqlite."
            )
        return "sqlite", path[1:]
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        if not parts.hostname and "host=" not in parts.query:
            raise DBOSConfigurationError(
                f"{setting}={redact_url(url)!r} names no host: write "
                "postgresql://user:password@host:5432/database."
            )
        return "postgresql", url.replace("postgresql+psycopg://", "postgresql://", 1)
    raise DBOSConfigurationError(
        f"{setting}={redact_url(url)!r} is not a supported database URL: use "
        "sqlite:///file.sqlite or postgresql://user:password@host:5432/database."
    )


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password:
            return url.replace(f":{parts.password}@", ":***@", 1)
    except ValueError:
        pass
    return url
