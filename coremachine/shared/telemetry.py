"""A service's telemetry: traces (shared/tracing.py) and its Prometheus metrics server.

Built once by each service's composition root (bootstrap.py), before its
gRPC server and channels, which take the interceptors from here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, disable_created_metrics

from coremachine.shared import tracing
from coremachine.shared.grpc_metrics import GrpcServerMetrics
from coremachine.shared.metrics import MetricsServer, PoolCollector, new_registry

log = logging.getLogger(__name__)

# RPCs made every few seconds by every process: tracing them would fill the
# backend with one-span traces that say nothing about any job.
UNTRACED_METHODS = frozenset(
    {"HeartbeatWorker", "RegisterOrchestrator", "RenewLeases", "Check", "Watch"}
)


def _traced(details: Any) -> bool:
    method = getattr(details, "method", "") or ""
    if isinstance(method, bytes):
        method = method.decode()
    if "grpc.reflection" in method or "grpc.health" in method:
        return False
    return method.rsplit("/", 1)[-1] not in UNTRACED_METHODS


@dataclass
class Telemetry:
    service: str
    registry: CollectorRegistry
    server: MetricsServer
    grpc_metrics: GrpcServerMetrics
    _pools: list[Callable[[], Iterable[tuple[str, Any]]]] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        service: str,
        *,
        metrics_port: int,
        metrics_host: str = "0.0.0.0",
        version: str = "",
        broker: str = "postgres",
        instance: str = "",
    ) -> Telemetry:
        """Configures tracing from OTEL_* and starts serving /metrics (port 0: not served)."""
        if tracing.configure(
            service,
            version,
            messaging_system="servicebus" if broker == "servicebus" else "coremachine_pgqueue",
            instance=instance,
        ):
            log.info("tracing on (OTEL_* exporter configured)")
        # No `<counter>_created` series: they double a scrape's size and dashboards use
        # none (process-wide, like the metrics server itself).
        disable_created_metrics()
        registry = new_registry(service, version)
        telemetry = cls(
            service,
            registry,
            MetricsServer(registry, metrics_port, metrics_host),
            GrpcServerMetrics(registry),
        )
        registry.register(PoolCollector(telemetry._all_pools))
        telemetry.server.start()
        return telemetry

    @property
    def metrics_port(self) -> int:
        return self.server.port

    def add_pools(self, pools: Callable[[], Iterable[tuple[str, Any]]]) -> None:
        """Database pools to report (name, psycopg_pool pool), read at each scrape."""
        self._pools.append(pools)

    def _all_pools(self) -> Iterable[tuple[str, Any]]:
        for pools in self._pools:
            yield from pools()

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        interceptors: list[grpc.aio.ServerInterceptor] = [self.grpc_metrics]
        if tracing.enabled():
            from opentelemetry.instrumentation.grpc import aio_server_interceptor

            interceptors.insert(0, aio_server_interceptor(filter_=_traced))
        return interceptors

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """Interceptors of channels to other services: trace context goes with each call."""
        if not tracing.enabled():
            return []
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        return list(aio_client_interceptors(filter_=_traced))

    def close(self) -> None:
        self.server.stop()
        tracing.shutdown()
