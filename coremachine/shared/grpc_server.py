"""Runs a grpc.aio server the same way in every service.

Each server has the standard health service and server reflection (so
grpcurl works), and stops gracefully on SIGTERM/SIGINT: it stops accepting
calls, lets in-flight calls finish within a grace period, then runs the
service's own shutdown (which releases unfinished work).

Health: the overall status ("") and every registered service say SERVING
only while nothing is wrong: no dependency probe failing (health_monitor.py)
and no background loop down (background.py). The `liveness` service stays
SERVING as long as the process runs: a liveness probe must not restart a
service that is only waiting for PostgreSQL to come back.

Exit codes: 0 after SIGTERM/SIGINT, non-zero when a background loop could
not go on (background.EXIT_LOOP_FAILED) or start-up failed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from coremachine.shared.background import (
    EXIT_LOOP_FAILED,
    Background,
    Loop,
    LoopFailed,
    supervise,
)
from coremachine.shared.grpc_tls import TlsConfig

log = logging.getLogger(__name__)

# Larger than gRPC's 4 MB default: stage results of big fan-outs travel in
# chunks, but a chunk of large results can exceed it.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
# Clients (the services' channels and the SDK) ping every 20 s during a call
# to notice a dead peer. gRPC servers by default accept a ping without data
# only every 5 minutes and answer the third early one with GOAWAY
# "too_many_pings", dropping the connection under a long event watch; the
# server allows what its own clients do (and still refuses a ping flood).
CLIENT_KEEPALIVE_MS = 20_000


def server_options(client_keepalive_ms: int = CLIENT_KEEPALIVE_MS) -> list[tuple[str, Any]]:
    """A server's channel options: message sizes, and the pings its clients send."""
    return [
        *CHANNEL_OPTIONS,
        ("grpc.http2.min_ping_interval_without_data_ms", client_keepalive_ms // 2),
    ]


LIVENESS = "liveness"
# A dependency's problem before its first probe: health is NOT_SERVING, but
# calls are not refused for it (the service has just checked it at start-up).
NOT_PROBED = "not probed yet"
# Always answered, whatever is down: that is how the outage is seen.
_ALWAYS_SERVED = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class _RefuseWhileDown(grpc.aio.ServerInterceptor):
    """Fails calls at once with UNAVAILABLE while a dependency they all need is down.

    Without it each call would wait for a pooled connection that cannot be
    made (seconds) before failing the same way; with it, clients get their
    503 / UNAVAILABLE at once and retry after the outage.
    """

    def __init__(self, problems: dict[str, str], components: Sequence[str]) -> None:
        self.problems = problems
        self.components = tuple(components)

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[no-untyped-def]
        handler = await continuation(handler_call_details)
        down = [c for c in self.components if self.problems.get(c, NOT_PROBED) != NOT_PROBED]
        if not down or handler is None or handler_call_details.method.startswith(_ALWAYS_SERVED):
            return handler
        message = "; ".join(f"{c} unavailable: {self.problems[c]}" for c in down)

        async def refuse(request, context):  # type: ignore[no-untyped-def]
            await context.abort(grpc.StatusCode.UNAVAILABLE, message)

        async def refuse_stream(request, context):  # type: ignore[no-untyped-def]
            await context.abort(grpc.StatusCode.UNAVAILABLE, message)
            yield  # pragma: no cover (makes this an async generator)

        if handler.unary_unary:
            make, behaviour = grpc.unary_unary_rpc_method_handler, refuse
        elif handler.unary_stream:
            make, behaviour = grpc.unary_stream_rpc_method_handler, refuse_stream
        else:
            return handler  # no client-streaming methods here
        return make(
            behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class GrpcServer:
    """A grpc.aio server with health and reflection, bound to one port.

    With `tls` (TlsConfig.from_settings) the port serves TLS, or mutual TLS
    when the config requires client certificates; without it, plaintext.
    With `max_concurrent_rpcs`, calls beyond that many in flight are refused
    at once with RESOURCE_EXHAUSTED instead of queueing. `max_connection_age`
    (seconds) closes client connections that old, gracefully. While a component
    named in `refuse_while` is reported down (e.g. "database"), every call
    but health and reflection is refused at once with UNAVAILABLE.
    """

    def __init__(
        self,
        port: int,
        host: str = "0.0.0.0",
        *,
        tls: TlsConfig | None = None,
        max_concurrent_rpcs: int | None = None,
        refuse_while: Sequence[str] = (),
        max_connection_age: float | None = None,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self.tls = tls
        # component -> why it is not fine; empty = SERVING.
        self.problems: dict[str, str] = {}
        options = server_options()
        if max_connection_age is not None:
            # Clients reconnect now and then, and so re-resolve the service's
            # name: replicas added since get their share of the calls.
            options += [
                ("grpc.max_connection_age_ms", int(max_connection_age * 1000)),
                ("grpc.max_connection_age_grace_ms", int(max_connection_age * 1000)),
            ]
        # Interceptors: metrics and tracing (shared/telemetry.py), then the
        # refusal while a dependency is down (so that refusals are counted).
        chain = list(interceptors)
        if refuse_while:
            chain.append(_RefuseWhileDown(self.problems, refuse_while))
        self.server = grpc.aio.server(
            options=options,
            maximum_concurrent_rpcs=max_concurrent_rpcs,
            interceptors=chain or None,
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self._service_names: list[str] = [health.SERVICE_NAME, reflection.SERVICE_NAME]
        self.address = f"{host}:{port}"
        self.port = port
        self._started = False

    def add(
        self, register: Callable[[object, grpc.aio.Server], None], servicer: object, name: str
    ) -> None:
        """Registers a servicer (name = its full service name, for reflection and health)."""
        register(servicer, self.server)
        self._service_names.append(name)

    async def report(self, component: str, problem: str | None) -> None:
        """Records that a component is fine (None) or why it is not; updates health."""
        before = bool(self.problems)
        if problem is None:
            self.problems.pop(component, None)
        else:
            self.problems[component] = problem
        if self._started and before != bool(self.problems):
            log.warning(
                "health: %s",
                "NOT_SERVING" if self.problems else "SERVING",
                extra={"fields": {"problems": dict(self.problems)}},
            )
            await self._publish()

    async def _publish(self) -> None:
        status = (
            health_pb2.HealthCheckResponse.NOT_SERVING
            if self.problems
            else health_pb2.HealthCheckResponse.SERVING
        )
        for name in [*self._service_names, ""]:
            await self.health.set(name, status)
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)

    async def start(self) -> int:
        reflection.enable_server_reflection(self._service_names, self.server)
        if self.tls is None:
            self.port = self.server.add_insecure_port(self.address)
        else:
            self.port = self.server.add_secure_port(self.address, self.tls.server_credentials())
        await self.server.start()
        self._started = True
        await self._publish()
        return self.port

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def serve_until_signalled(
    server: GrpcServer,
    background: Iterable[Loop | Background] = (),
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
    grace: float = 10.0,
) -> None:
    """Starts the server and background loops; on SIGTERM/SIGINT shuts all down.

    Background loops receive a `stopping` event and must return soon after it
    is set, having finished or released what they hold. A loop that fails is
    restarted or ends the process as its `Background` policy says (plain
    coroutine functions restart); when one ends it, everything is shut down
    as on SIGTERM and then SystemExit(EXIT_LOOP_FAILED) is raised.
    """
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    port = await server.start()
    log.info("serving gRPC", extra={"fields": {"port": port}})
    tasks = [
        asyncio.create_task(supervise(Background.of(run), stopping, server.report))
        for run in background
    ]
    stop_waiter = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait([stop_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
    failed = [t for t in done if t is not stop_waiter and t.exception() is not None]
    for task in failed:
        log.error("stopping the service: %s", task.exception())
    stopping.set()
    log.info("shutting down")
    await server.stop(grace)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if task in failed or not isinstance(result, BaseException):
            continue
        if not isinstance(result, asyncio.CancelledError):
            log.error("background loop failed during shutdown", exc_info=result)
    if on_shutdown is not None:
        await on_shutdown()
    if failed:
        log.error("stopped after a failure", extra={"fields": {"exit_code": EXIT_LOOP_FAILED}})
        raise SystemExit(EXIT_LOOP_FAILED)
    log.info("stopped")


__all__ = ["LIVENESS", "Background", "GrpcServer", "LoopFailed", "serve_until_signalled"]
