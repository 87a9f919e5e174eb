"""OpenTelemetry traces, configured by the standard OTEL_* variables only.

Tracing is on when an exporter is configured (`OTEL_TRACES_EXPORTER`, or an
OTLP endpoint: `OTEL_EXPORTER_OTLP_ENDPOINT` / `..._TRACES_ENDPOINT`) and
`OTEL_SDK_DISABLED` is not true. Otherwise no tracer provider, no gRPC or
ASGI instrumentation is installed and every helper here returns after one
attribute check: the hot path pays nothing.

One job is one trace, and its context travels with the work, not with the
call stack: the state service stores it with the job (jobs.trace_context)
and every queue message carries a W3C `traceparent` in its properties
(whatever OTEL_PROPAGATORS says, which only governs gRPC and HTTP). Work that
starts outside the job's trace (a batch of completions, a janitor sweep, a
redrive) opens its spans in the job's trace with a link to where it came
from: see `job_span`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# The Azure SDKs read (and write) a message's trace context here too.
DIAGNOSTIC_ID = "Diagnostic-Id"
# Span links per span, as the SDK's default limit (OTEL_SPAN_LINK_COUNT_LIMIT).
MAX_LINKS = 128


@dataclass
class _State:
    on: bool = False
    tracer: trace.Tracer = field(default_factory=trace.NoOpTracer)
    provider: Any = None
    # COREMACHINE_TRACE_PARAMETERS: job and task parameters recorded on spans.
    parameters: bool = False
    # messaging.system of queue spans: "servicebus", or the PostgreSQL queue's name.
    messaging_system: str = "coremachine_pgqueue"


STATE = _State()


def enabled() -> bool:
    """Whether this process records spans (an exporter is configured)."""
    return STATE.on


def record_parameters() -> bool:
    """Whether parameter values may go on spans (never, unless enabled by a setting)."""
    return STATE.on and STATE.parameters


def exporters_configured(env: Mapping[str, str]) -> list[str]:
    """The span exporters the OTEL_* variables ask for ([] = tracing off)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = env.get("OTEL_TRACES_EXPORTER")
    if names is not None:
        return [n.strip() for n in names.split(",") if n.strip() and n.strip() != "none"]
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return ["otlp"]
    return []


def configure(
    service: str,
    version: str = "",
    env: Mapping[str, str] | None = None,
    *,
    messaging_system: str = "coremachine_pgqueue",
    instance: str = "",
) -> bool:
    """Installs the SDK tracer provider when an exporter is configured; returns whether it did.

    The SDK reads the rest itself: OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
    (default service.name `coremachine-<service>`), OTEL_TRACES_SAMPLER(_ARG),
    OTEL_BSP_*, OTEL_EXPORTER_OTLP_* (endpoint, headers, timeout, ...).
    """
    env = os.environ if env is None else env
    names = exporters_configured(env)
    if not names or STATE.on:
        return STATE.on
    # Imported here: a process with tracing off never loads the SDK.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {"service.namespace": "coremachine", "service.version": version}
    if instance:
        attributes["service.instance.id"] = instance
    resource = Resource.create(attributes)
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: f"coremachine-{service}"}))
    provider = TracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, env)))
    trace.set_tracer_provider(provider)
    STATE.provider = provider
    STATE.tracer = provider.get_tracer("coremachine", version)
    STATE.parameters = env.get("COREMACHINE_TRACE_PARAMETERS", "").strip().lower() == "true"
    STATE.messaging_system = messaging_system
    STATE.on = True
    return True


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER: {name!r} is not supported (otlp, console, none)")
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"  # the specification's default
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported")


def shutdown() -> None:
    """Flushes and stops the exporters (at service shutdown)."""
    if STATE.provider is not None:
        STATE.provider.shutdown()


# -- trace contexts as text ----------------------------------------------------


def traceparent_of(ctx: SpanContext) -> str:
    """The W3C traceparent of a span context ("" for an invalid one)."""
    if not ctx.is_valid:
        return ""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The span context of a W3C traceparent; None when absent or malformed."""
    if not value:
        return None
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id, flags = int(parts[1], 16), int(parts[2], 16), int(parts[3][:2], 16)
    except ValueError:
        return None
    ctx = SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(flags))
    return ctx if ctx.is_valid else None


def current_traceparent() -> str:
    """The traceparent of the current span ("" when there is none)."""
    if not STATE.on:
        return ""
    return traceparent_of(trace.get_current_span().get_span_context())


def message_headers() -> dict[str, str]:
    """Message properties carrying the current span's context ({} when off or none)."""
    if not STATE.on:
        return {}
    value = traceparent_of(trace.get_current_span().get_span_context())
    return {TRACEPARENT: value} if value else {}


def context_of_message(properties: Mapping[str, str]) -> SpanContext | None:
    """A received message's trace context (traceparent, else the Azure SDK's Diagnostic-Id)."""
    return parse_traceparent(properties.get(TRACEPARENT) or properties.get(DIAGNOSTIC_ID))


def parent(ctx: SpanContext | None) -> otel_context.Context | None:
    """A context whose current span is `ctx` (None: the current context)."""
    if ctx is None:
        return None
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def links_to(traceparents: Sequence[str | None], limit: int = MAX_LINKS) -> list[Link]:
    """Links to the spans these traceparents name (malformed ones skipped)."""
    links = []
    for value in traceparents:
        ctx = parse_traceparent(value)
        if ctx is not None:
            links.append(Link(ctx))
            if len(links) >= limit:
                break
    return links


# -- spans -----------------------------------------------------------------------


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Link] = (),
    parent_ctx: SpanContext | None = None,
) -> Iterator[trace.Span]:
    """A span, current inside the block; a no-op span when tracing is off."""
    if not STATE.on:
        yield trace.INVALID_SPAN
        return
    with STATE.tracer.start_as_current_span(
        name, context=parent(parent_ctx), kind=kind, attributes=attributes, links=links
    ) as current:
        yield current


@contextlib.contextmanager
def job_span(
    name: str,
    job_trace: str | None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[Link] = (),
) -> Iterator[trace.Span]:
    """A span in a job's trace (its stored traceparent `job_trace`).

    Inside the job's trace already (a call made while planning it), the span
    is a child of the current one. Otherwise (a batch of completions from a
    worker, a janitor sweep, a redrive from an operator's request) it is a
    child of the job's stored context, linked to the span it was started
    from, so the job's trace goes on whoever does the work.
    """
    if not STATE.on:
        yield trace.INVALID_SPAN
        return
    current = trace.get_current_span().get_span_context()
    job_ctx = parse_traceparent(job_trace)
    context = None
    all_links = list(links)
    if job_ctx is not None and not (current.is_valid and current.trace_id == job_ctx.trace_id):
        context = parent(job_ctx)
        if current.is_valid:
            all_links.append(Link(current, {"coremachine.link": "caller"}))
    with STATE.tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=attributes, links=all_links[: MAX_LINKS + 1]
    ) as current_span:
        yield current_span


def set_attributes(target: trace.Span, attributes: Mapping[str, Any]) -> None:
    """Sets attributes when the span records (cheap no-op otherwise)."""
    if target.is_recording():
        target.set_attributes(attributes)


def messaging_attributes(operation: str, queue: str, count: int | None = None) -> dict[str, Any]:
    """The OpenTelemetry messaging semantic conventions' attributes of a queue operation."""
    attributes: dict[str, Any] = {
        "messaging.system": STATE.messaging_system,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": queue,
    }
    if count is not None:
        attributes["messaging.batch.message_count"] = count
    return attributes
