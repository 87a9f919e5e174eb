"""The gateway's Prometheus metrics: HTTP requests by route template, accepted submits.

Labels are route templates (`/api/jobs/status/{job_id}`), never raw paths; a
request no route matched is counted under "unmatched". A submit is counted
once the orchestrator accepted it, so the job type label is a real one.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coremachine.shared.metrics import LATENCY_BUCKETS


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "http_server_requests",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_server_request_duration_seconds",
            "HTTP request duration (an event stream: until it ends).",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.submitted = Counter(
            "coremachine_api_jobs_submitted",
            "Jobs submitted through the gateway (HTTP or gRPC) and accepted.",
            ["job_type", "created"],
            registry=registry,
        )


class HttpMetricsMiddleware:
    """Pure ASGI (event streams are not buffered): times and counts each request."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router records the matched route in the (shared) scope.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "GET")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
