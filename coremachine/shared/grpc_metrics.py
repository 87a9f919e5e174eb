"""gRPC server metrics: calls started, handled (by status code) and their latency.

Named as go-grpc-prometheus names them, so existing dashboards and alerts
apply: grpc_server_started_total, grpc_server_handled_total{grpc_code},
grpc_server_handling_seconds. Labels are the service and method names the
server registered (bounded by the protos).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from coremachine.shared.metrics import LATENCY_BUCKETS


def _split(full_method: str) -> tuple[str, str]:
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service or "unknown", method or "unknown"


def _code(context: grpc.aio.ServicerContext, failed: BaseException | None) -> str:
    code = context.code()
    if code is None:
        return "OK" if failed is None else "UNKNOWN"
    if isinstance(code, grpc.StatusCode):
        return code.name
    try:
        return grpc.StatusCode(code).name  # type: ignore[call-arg]
    except ValueError:
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status.name
    return "UNKNOWN"


class GrpcServerMetrics(grpc.aio.ServerInterceptor):
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["grpc_service", "grpc_method", "grpc_type"]
        self.started = Counter(
            "grpc_server_started", "RPCs started on the server.", labels, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by status code.",
            [*labels, "grpc_code"],
            registry=registry,
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time to handle an RPC (a stream: until it ends).",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, method = _split(handler_call_details.method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, service, method, "unary"),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, service, method, "server_stream"),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client and bidirectional streams: none served here

    def _observe(
        self,
        labels: tuple[str, str, str],
        context: grpc.aio.ServicerContext,
        started: float,
        failed: BaseException | None,
    ) -> None:
        self.handled.labels(*labels, _code(context, failed)).inc()
        self.latency.labels(*labels).observe(time.perf_counter() - started)

    def _unary(self, behavior: Any, service: str, method: str, kind: str) -> Any:
        labels = (service, method, kind)
        started_counter = self.started.labels(*labels)

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started_counter.inc()
            started = time.perf_counter()
            failed: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                failed = exc
                raise
            finally:
                self._observe(labels, context, started, failed)

        return handle

    def _stream(self, behavior: Any, service: str, method: str, kind: str) -> Any:
        labels = (service, method, kind)
        started_counter = self.started.labels(*labels)
        if not inspect.isasyncgenfunction(behavior):

            async def write(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started_counter.inc()
                started = time.perf_counter()
                failed: BaseException | None = None
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    failed = exc
                    raise
                finally:
                    self._observe(labels, context, started, failed)

            return write

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started_counter.inc()
            started = time.perf_counter()
            failed: BaseException | None = None
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                failed = exc
                raise
            finally:
                self._observe(labels, context, started, failed)

        return stream
