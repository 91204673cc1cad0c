"""OpenTelemetry spans per workflow and step, when opentelemetry-api is installed."""

from collections.abc import Generator
from contextlib import contextmanager
from types import ModuleType
from typing import Any


def _load_otel() -> ModuleType | None:
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - exercised where opentelemetry is absent
        return None
    return trace


_trace = _load_otel()


class SpanHandle:
    """Lets the caller mark the span failed with the exception the function raised."""

    __slots__ = ("_span",)

    def __init__(self, span: Any) -> None:
        self._span = span

    def record(self, error: BaseException | None) -> None:
        if error is not None and self._span is not None and _trace is not None:
            self._span.record_exception(error)
            self._span.set_status(_trace.Status(_trace.StatusCode.ERROR, str(error)))


_NO_SPAN = SpanHandle(None)


@contextmanager
def span(name: str, attributes: dict[str, Any]) -> Generator[SpanHandle, None, None]:
    """A span named after the function's registered name; nothing without OpenTelemetry,
    or while no tracer provider is set (the API's default proxy would only make no-op
    spans, at a cost paid per workflow and per step)."""
    if _trace is None or isinstance(_trace.get_tracer_provider(), _trace.ProxyTracerProvider):
        yield _NO_SPAN
        return
    tracer = _trace.get_tracer("dbos_sdk")
    with tracer.start_as_current_span(name, attributes=attributes) as sp:
        yield SpanHandle(sp)
