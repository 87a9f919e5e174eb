"""Prometheus metrics: one registry per service, served on its own port.

Each service builds its instruments on a `CollectorRegistry` of its own (no
global registry: nothing is registered at import time, and tests can build
several services in one process). Labels stay bounded: job types, task
types, queues, gRPC methods, route templates, never job or task ids.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Gauge,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Latency buckets (seconds) for calls and task runs: from 1 ms to 10 minutes.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    600.0,
)


def new_registry(service: str, version: str = "") -> CollectorRegistry:
    """A registry with the process, platform and GC collectors and a build-info gauge."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        # The default collectors are stateless readers: register the same ones here.
        registry.register(collector)
    info = Gauge(
        "coremachine_build_info",
        "The service and version of this process (always 1).",
        ["service", "version"],
        registry=registry,
    )
    info.labels(service, version or "unknown").set(1)
    return registry


class MetricsServer:
    """Serves a registry's /metrics over HTTP on a thread of its own (port 0: none)."""

    def __init__(self, registry: CollectorRegistry, port: int, host: str = "0.0.0.0") -> None:
        self.registry = registry
        self.port = port
        self.host = host
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        if self.port <= 0:
            return 0
        self._server, self._thread = start_http_server(self.port, self.host, self.registry)
        self.port = self._server.server_port
        log.info("serving metrics", extra={"fields": {"metrics_port": self.port}})
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class PoolCollector(Collector):
    """psycopg_pool statistics of named connection pools, read at scrape time."""

    def __init__(self, pools: Callable[[], Iterable[tuple[str, Any]]]) -> None:
        self._pools = pools

    def collect(self) -> Iterable[Any]:
        size = GaugeMetricFamily(
            "coremachine_db_pool_connections", "Connections open in the pool.", labels=["pool"]
        )
        idle = GaugeMetricFamily(
            "coremachine_db_pool_connections_idle", "Open connections not in use.", labels=["pool"]
        )
        most = GaugeMetricFamily(
            "coremachine_db_pool_connections_max", "The pool's maximum size.", labels=["pool"]
        )
        waiting = GaugeMetricFamily(
            "coremachine_db_pool_requests_waiting",
            "Requests waiting for a connection now.",
            labels=["pool"],
        )
        requests = CounterMetricFamily(
            "coremachine_db_pool_requests",
            "Connections handed out by the pool.",
            labels=["pool"],
        )
        errors = CounterMetricFamily(
            "coremachine_db_pool_connection_errors",
            "Failed connection attempts and connections lost.",
            labels=["pool"],
        )
        for name, pool in self._pools():
            stats = pool.get_stats()
            size.add_metric([name], stats.get("pool_size", 0))
            idle.add_metric([name], stats.get("pool_available", 0))
            most.add_metric([name], stats.get("pool_max", 0))
            waiting.add_metric([name], stats.get("requests_waiting", 0))
            requests.add_metric([name], stats.get("requests_num", 0))
            errors.add_metric(
                [name], stats.get("connections_errors", 0) + stats.get("connections_lost", 0)
            )
        yield from (size, idle, most, waiting, requests, errors)


def broker_pools(broker: object) -> list[tuple[str, Any]]:
    """The connection pools of a PostgreSQL-queue broker ([] for other brokers)."""
    pools = getattr(broker, "connection_pools", None)
    return list(pools()) if callable(pools) else []
