"""OpenTelemetry spans: one per workflow and per step, named after the registered names,
nested (a step's span inside its workflow's span), and marked as errors on failure.
Spans are collected with the SDK's InMemorySpanExporter on the real tracer provider."""

import asyncio
from collections.abc import Generator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from dbos_sdk import DBOS, SetWorkflowID


class _WhileActive(SimpleSpanProcessor):
    """Exports ended spans only while a test of this module runs (a processor cannot be
    removed from a provider, and later tests' spans should not pile up here)."""

    active = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.active:
            super().on_end(span)


_processor: _WhileActive | None = None


@pytest.fixture
def spans() -> Generator[InMemorySpanExporter, None, None]:
    """An in-memory exporter on the process's tracer provider (installed once:
    OpenTelemetry allows one global provider), collecting this test's spans only."""
    global _processor
    if _processor is None:
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            provider = TracerProvider()
            trace.set_tracer_provider(provider)
        _processor = _WhileActive(InMemorySpanExporter())
        provider.add_span_processor(_processor)
    exporter = _processor.span_exporter
    assert isinstance(exporter, InMemorySpanExporter)
    exporter.clear()
    _processor.active = True
    yield exporter
    _processor.active = False
    exporter.clear()


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    finished = exporter.get_finished_spans()
    named = {s.name: s for s in finished}
    assert len(named) == len(finished), [s.name for s in finished]
    return named


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def exception_events(span: ReadableSpan) -> list[str]:
    return [
        str(e.attributes.get("exception.message"))
        for e in span.events
        if e.name == "exception" and e.attributes
    ]


def assert_nested(child: ReadableSpan, parent: ReadableSpan) -> None:
    assert child.context is not None and parent.context is not None
    assert child.context.trace_id == parent.context.trace_id
    assert parent_id(child) == parent.context.span_id


@pytest.mark.timeout(60)
def test_workflow_and_step_spans_are_named_nested_and_carry_the_workflow_id(
    dbos: DBOS, spans: InMemorySpanExporter
) -> None:
    @DBOS.step(name="trace.fetch")
    def fetch(x: int) -> int:
        return x + 1

    @DBOS.step(name="trace.store")
    def store(x: int) -> int:
        return x * 2

    @DBOS.workflow(name="trace.pipeline")
    def pipeline(x: int) -> int:
        return store(fetch(x))

    DBOS.launch()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request") as request, SetWorkflowID("traced-1"):
        assert pipeline(1) == 4
    got = by_name(spans)
    assert set(got) == {"request", "trace.pipeline", "trace.fetch", "trace.store"}
    workflow = got["trace.pipeline"]
    assert_nested(workflow, got["request"])  # a direct call joins the caller's trace
    assert request.get_span_context().span_id == parent_id(workflow)
    for name in ("trace.fetch", "trace.store"):
        step = got[name]
        assert_nested(step, workflow)
        assert step.attributes is not None
        assert dict(step.attributes) == {"dbos.workflow_id": "traced-1", "dbos.kind": "step"}
        assert step.status.status_code == StatusCode.UNSET
        assert workflow.start_time is not None and step.start_time is not None
        assert workflow.end_time is not None and step.end_time is not None
        assert workflow.start_time <= step.start_time <= step.end_time <= workflow.end_time
    assert workflow.attributes is not None
    assert dict(workflow.attributes) == {"dbos.workflow_id": "traced-1", "dbos.kind": "workflow"}
    assert workflow.status.status_code == StatusCode.UNSET


@pytest.mark.timeout(60)
def test_a_failing_step_marks_its_span_and_the_failing_workflow_span_as_errors(
    dbos: DBOS, spans: InMemorySpanExporter
) -> None:
    @DBOS.step(name="trace.explode")
    def explode() -> None:
        raise ValueError("boom")

    @DBOS.workflow(name="trace.fails")
    def fails() -> None:
        explode()

    @DBOS.workflow(name="trace.recovers")
    def recovers() -> str:
        try:
            explode()
        except ValueError:
            return "handled"
        return "unreachable"

    DBOS.launch()
    with pytest.raises(ValueError, match="boom"):
        fails()
    got = by_name(spans)
    assert set(got) == {"trace.fails", "trace.explode"}
    assert_nested(got["trace.explode"], got["trace.fails"])
    for span in got.values():
        assert span.status.status_code == StatusCode.ERROR, span.name
        assert span.status.description is not None and "boom" in span.status.description
        assert exception_events(span) == ["boom"], span.name  # recorded once

    spans.clear()
    assert recovers() == "handled"
    got = by_name(spans)
    assert got["trace.explode"].status.status_code == StatusCode.ERROR
    assert got["trace.recovers"].status.status_code == StatusCode.UNSET
    assert_nested(got["trace.explode"], got["trace.recovers"])


@pytest.mark.timeout(60)
def test_async_workflow_and_step_spans_nest_the_same_way(
    dbos: DBOS, spans: InMemorySpanExporter
) -> None:
    @DBOS.step(name="trace.async_step")
    async def async_step(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    @DBOS.workflow(name="trace.async_workflow")
    async def async_workflow(x: int) -> int:
        return await async_step(await async_step(x))

    DBOS.launch()
    assert asyncio.run(async_workflow(1)) == 3
    finished = spans.get_finished_spans()
    assert sorted(s.name for s in finished) == [
        "trace.async_step",
        "trace.async_step",
        "trace.async_workflow",
    ]
    workflow = next(s for s in finished if s.name == "trace.async_workflow")
    assert parent_id(workflow) is None
    for step in (s for s in finished if s.name == "trace.async_step"):
        assert_nested(step, workflow)


@pytest.mark.timeout(60)
def test_background_and_child_workflow_spans_nest_under_the_workflow_that_runs_them(
    dbos: DBOS, spans: InMemorySpanExporter
) -> None:
    @DBOS.step(name="trace.leaf")
    def leaf() -> str:
        return "leaf"

    @DBOS.workflow(name="trace.child")
    def child() -> str:
        return leaf()

    @DBOS.workflow(name="trace.parent")
    def parent() -> str:
        return child() + leaf()

    DBOS.launch()
    assert DBOS.start_workflow(parent).get_result(timeout=10) == "leafleaf"
    finished = spans.get_finished_spans()
    assert sorted(s.name for s in finished) == [
        "trace.child",
        "trace.leaf",
        "trace.leaf",
        "trace.parent",
    ]
    named = {s.name: s for s in finished}
    parent_span, child_span = named["trace.parent"], named["trace.child"]
    assert parent_id(parent_span) is None  # started in the background: its own trace
    assert_nested(child_span, parent_span)
    leaves = [s for s in finished if s.name == "trace.leaf"]
    assert sorted(parent_id(s) or 0 for s in leaves) == sorted(
        [child_span.context.span_id, parent_span.context.span_id]  # type: ignore[union-attr]
    )
