"""Probes a service's dependencies and reports them to its gRPC health.

Each service names what it cannot work without (the state service: the
database and the broker; the orchestrator and the worker: the state service
and the broker; the gateway: the state service and the orchestrator). A
probe that fails or does not answer within `timeout` turns the service's
health NOT_SERVING until it passes again, so that a load balancer or a
readiness probe stops sending work that would only fail, and `make up` or an
operator sees why in the log. The first round of probes runs before the
service reports SERVING at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coremachine.shared.grpc_server import NOT_PROBED, GrpcServer

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[object]]

DEFAULT_INTERVAL = 2.0
DEFAULT_TIMEOUT = 2.0
_RETRY_INTERVAL = 0.5


class HealthMonitor:
    """Runs every probe each `interval` seconds (see the module docstring)."""

    def __init__(
        self,
        server: GrpcServer,
        probes: Mapping[str, Probe],
        *,
        interval: float = DEFAULT_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.server = server
        self.probes = dict(probes)
        self.interval = interval
        self.timeout = timeout
        for name in self.probes:
            # Not SERVING before the first probe has passed.
            server.problems[name] = NOT_PROBED

    async def _probe(self, name: str, probe: Probe) -> str | None:
        try:
            await asyncio.wait_for(probe(), self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:.0f}s"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        return None

    async def check(self) -> dict[str, str | None]:
        """Runs the probes once and reports them; returns name -> problem (None: fine)."""
        names = list(self.probes)
        found = await asyncio.gather(*(self._probe(n, self.probes[n]) for n in names))
        results = dict(zip(names, found, strict=True))
        for name, problem in results.items():
            was = self.server.problems.get(name)
            if problem is not None and was is None:
                log.warning("dependency %s failing: %s", name, problem)
            elif problem is None and was is not None and was != NOT_PROBED:
                log.warning("dependency %s is back", name)
            await self.server.report(name, problem)
        return results

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            results = await self.check()
            # While something fails, look again sooner: SERVING comes back
            # within half a second of the dependency.
            failing = any(problem is not None for problem in results.values())
            wait = min(self.interval, _RETRY_INTERVAL) if failing else self.interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), wait)


class DatabaseProbe:
    """PostgreSQL answers on a connection of the probe's own.

    Not one from the service's pool: a pool saturated by a burst of work is
    busy, not down, and its queue must not make the service look down.
    """

    def __init__(self, connect: Callable[[], Awaitable[Any]]) -> None:
        self.connect = connect
        self._conn: Any = None

    async def __call__(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await self.connect()
        try:
            await self._conn.execute("SELECT 1")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def broker_probe(broker: Any, queue: str) -> Probe:
    """A broker that answers a cheap question about one of its queues."""

    async def probe() -> None:
        await broker.dead_letter_count(queue)

    return probe


def grpc_service_probe(channel: grpc.aio.Channel, service: str = "") -> Probe:
    """Another CoreMachine service whose health says SERVING."""
    stub = health_pb2_grpc.HealthStub(channel)

    async def probe() -> None:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            raise RuntimeError(f"reports {name}")

    return probe
