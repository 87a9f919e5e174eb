"""The tracing helpers: off unless an exporter is configured; trace contexts as text;
job spans continue the job's trace from wherever the work starts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from coremachine.shared import tracing
from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.servicebus_batching import to_sdk_message


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, []),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ["console", "otlp"]),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
    ],
)
def test_tracing_is_on_only_when_an_exporter_is_configured(env, expected):
    assert tracing.exporters_configured(env) == expected


def test_with_tracing_off_nothing_is_recorded_or_propagated():
    assert not tracing.enabled()
    with (
        tracing.span("x") as span,
        tracing.job_span("y", "00-" + "1" * 32 + "-" + "2" * 16 + "-01"),
    ):
        assert not span.is_recording()
        assert tracing.message_headers() == {}
        assert tracing.current_traceparent() == ""


def test_traceparents_round_trip_and_malformed_ones_are_ignored():
    value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ctx = tracing.parse_traceparent(value)
    assert ctx is not None and tracing.traceparent_of(ctx) == value
    for bad in ("", None, "00-xyz-abc-01", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "garbage"):
        assert tracing.parse_traceparent(bad) is None
    assert tracing.links_to([value, "nope", None]) and len(tracing.links_to([value, "nope"])) == 1
    # The Azure SDK's Diagnostic-Id is read when a message has no traceparent.
    assert tracing.context_of_message({"Diagnostic-Id": value}) == ctx


def test_service_bus_messages_carry_diagnostic_id_beside_traceparent():
    value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    sdk_message = to_sdk_message(OutgoingMessage("m1", b"{}", {"traceparent": value}))
    properties = sdk_message.application_properties or {}
    assert properties["traceparent"] == value and properties["Diagnostic-Id"] == value


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for one test."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    saved = (tracing.STATE.on, tracing.STATE.tracer)
    tracing.STATE.on, tracing.STATE.tracer = True, provider.get_tracer("test")
    yield exporter
    tracing.STATE.on, tracing.STATE.tracer = saved


def test_a_job_span_started_elsewhere_continues_the_jobs_trace_linked_to_its_caller(spans):
    with tracing.span("submit"):
        job_trace = tracing.current_traceparent()
    with tracing.span("worker batch") as batch, tracing.job_span("advance stage 1", job_trace):
        headers = tracing.message_headers()
    by_name = {s.name: s for s in spans.get_finished_spans()}
    advance, submit = by_name["advance stage 1"], by_name["submit"]
    assert advance.context.trace_id == submit.context.trace_id
    assert advance.parent is not None and advance.parent.span_id == submit.context.span_id
    assert [link.context.span_id for link in advance.links] == [batch.get_span_context().span_id]
    # Messages published there carry the advancement's context.
    assert headers == {"traceparent": tracing.traceparent_of(advance.context)}


def test_a_job_span_inside_the_jobs_trace_is_a_plain_child(spans):
    with tracing.span("submit"):
        job_trace = tracing.current_traceparent()
        with tracing.span("plan stage 1") as plan, tracing.job_span("publish tasks", job_trace):
            pass
    publish = next(s for s in spans.get_finished_spans() if s.name == "publish tasks")
    assert publish.parent is not None and publish.parent.span_id == plan.get_span_context().span_id
    assert not publish.links


def test_configure_installs_the_sdk_and_names_the_service(monkeypatch):
    saved = (tracing.STATE.on, tracing.STATE.tracer, tracing.STATE.provider)
    set_provider = []
    monkeypatch.setattr(trace, "set_tracer_provider", set_provider.append)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    try:
        env = {"OTEL_TRACES_EXPORTER": "console"}
        assert tracing.configure("worker", "1.2.3", env)
        [provider] = set_provider
        assert provider.resource.attributes["service.name"] == "coremachine-worker"
        assert provider.resource.attributes["service.version"] == "1.2.3"
        assert tracing.enabled() and not tracing.record_parameters()
        provider.shutdown()
    finally:
        tracing.STATE.on, tracing.STATE.tracer, tracing.STATE.provider = saved
