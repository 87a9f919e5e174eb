"""Runs a grpc.aio server the same way in every service.

Each server has the standard health service and server reflection (so
grpcurl works), and stops gracefully on SIGTERM/SIGINT: it stops accepting
calls, lets in-flight calls finish within a grace period, then runs the
service's own shutdown (which releases unfinished work).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from coremachine.shared.grpc_tls import TlsConfig

log = logging.getLogger(__name__)

# Larger than gRPC's 4 MB default: stage results of big fan-outs travel in
# chunks, but a chunk of large results can exceed it.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


class GrpcServer:
    """A grpc.aio server with health and reflection, bound to one port.

    With `tls` (TlsConfig.from_settings) the port serves TLS, or mutual TLS
    when the config requires client certificates; without it, plaintext.
    """

    def __init__(
        self,
        port: int,
        host: str = "0.0.0.0",
        *,
        tls: TlsConfig | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self.tls = tls
        # Interceptors: metrics and tracing (shared/telemetry.py).
        self.server = grpc.aio.server(
            options=CHANNEL_OPTIONS, interceptors=list(interceptors) or None
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names: list[str] = [health.SERVICE_NAME, reflection.SERVICE_NAME]
        self.address = f"{host}:{port}"
        self.port = port

    def add(
        self, register: Callable[[object, grpc.aio.Server], None], servicer: object, name: str
    ) -> None:
        """Registers a servicer (name = its full service name, for reflection and health)."""
        register(servicer, self.server)
        self._service_names.append(name)

    async def start(self) -> int:
        reflection.enable_server_reflection(self._service_names, self.server)
        if self.tls is None:
            self.port = self.server.add_insecure_port(self.address)
        else:
            self.port = self.server.add_secure_port(self.address, self.tls.server_credentials())
        await self.server.start()
        for name in [*self._service_names, ""]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def serve_until_signalled(
    server: GrpcServer,
    background: Iterable[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = (),
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
    grace: float = 10.0,
) -> None:
    """Starts the server and background loops; on SIGTERM/SIGINT shuts all down.

    Background loops receive a `stopping` event and must return soon after it
    is set, having finished or released what they hold.
    """
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    port = await server.start()
    log.info("serving gRPC", extra={"fields": {"port": port}})
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(run(stopping)) for run in background]
    stop_waiter = asyncio.create_task(stopping.wait())
    # A background loop that dies is a fatal error: stop everything.
    done, _ = await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        if task is not stop_waiter and task.exception() is not None:
            log.error("background loop failed", exc_info=task.exception())
    stopping.set()
    log.info("shutting down")
    await server.stop(grace)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            log.error("background loop failed during shutdown", exc_info=result)
    if on_shutdown is not None:
        await on_shutdown()
    log.info("stopped")
