"""Composition root of the gateway: authenticator, backends, the gRPC and HTTP servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import uvicorn

from coremachine.jobs.v1 import jobs_pb2_grpc
from coremachine.services.api_gateway.auth import (
    ApiKeyAuthenticator,
    Authenticator,
    DisabledAuthenticator,
)
from coremachine.services.api_gateway.backends import Backends
from coremachine.services.api_gateway.http_app import create_app
from coremachine.services.api_gateway.metrics import GatewayMetrics
from coremachine.services.api_gateway.params import ParameterLimits
from coremachine.services.api_gateway.servicer import JobServicer
from coremachine.services.api_gateway.settings import GatewaySettings
from coremachine.shared import tracing
from coremachine.shared.grpc_server import GrpcServer
from coremachine.shared.health_monitor import HealthMonitor, grpc_service_probe
from coremachine.shared.secrets import CachedSecrets, SecretsProvider
from coremachine.shared.secrets_providers import open_secrets_provider
from coremachine.shared.telemetry import Telemetry

log = logging.getLogger(__name__)


async def open_authenticator(
    settings: GatewaySettings,
) -> tuple[Authenticator, SecretsProvider | None]:
    """The key checker; fails start-up when keys are neither configured nor explicitly off."""
    if settings.auth_disabled:
        log.warning(
            "AUTH DISABLED (GATEWAY_AUTH_DISABLED=true): every caller is admin;"
            " for local development only"
        )
        return DisabledAuthenticator(), None
    secrets = CachedSecrets(
        open_secrets_provider(
            settings.secrets_provider,
            secrets_dir=settings.secrets_dir,
            key_vault_url=settings.key_vault_url,
        ),
        settings.api_keys_ttl_seconds,
    )
    authenticator = ApiKeyAuthenticator(secrets, settings.api_keys_secret)
    try:
        count = await authenticator.load()
    except BaseException:
        await secrets.close()
        raise
    log.info("API keys loaded", extra={"fields": {"keys": count}})
    return authenticator, secrets


@dataclass
class GatewayApp:
    server: GrpcServer
    http: uvicorn.Server
    backends: Backends
    secrets: SecretsProvider | None
    telemetry: Telemetry
    # Set at shutdown: open event streams (SSE and WatchJob) end at once, so
    # clients resume elsewhere instead of holding the shutdown up.
    streams_stopping: asyncio.Event
    health: HealthMonitor

    async def run_http(self, stopping: asyncio.Event) -> None:
        # uvicorn captures SIGTERM/SIGINT while it serves and re-raises them when
        # it stops, so the signal reaches serve_until_signalled after HTTP drained.
        serving = asyncio.create_task(self.http.serve())
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({serving, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if serving.done():
            # Stopped by a signal it captured (re-raised as it returns, so
            # `stopping` follows at once), or by itself: then it is a failure.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 2.0)
            if not stopping.is_set():
                serving.result()  # its exception, if any
                raise RuntimeError("the HTTP server stopped by itself")
        self.streams_stopping.set()
        self.http.should_exit = True
        await serving

    async def close(self) -> None:
        await self.backends.close()
        if self.secrets is not None:
            await self.secrets.close()
        self.telemetry.close()


def _version() -> str:
    try:
        return version("coremachine")
    except PackageNotFoundError:
        return "unknown"


async def build(settings: GatewaySettings) -> GatewayApp:
    telemetry = Telemetry.start(
        "api_gateway",
        metrics_port=settings.metrics_port,
        metrics_host=settings.metrics_host,
        version=_version(),
        broker=settings.broker,
    )
    metrics = GatewayMetrics(telemetry.registry)
    authenticator, secrets = await open_authenticator(settings)
    backends = Backends.connect(
        settings.state_address,
        settings.orchestrator_address,
        settings.worker_address,
        telemetry.client_interceptors(),
    )
    limits = ParameterLimits(settings.max_parameter_bytes, settings.max_parameter_depth)
    streams_stopping = asyncio.Event()
    server = GrpcServer(
        settings.grpc_port,
        interceptors=telemetry.server_interceptors(),
        max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
    )
    # Workers are left out: a pool scaled to zero is no reason to refuse calls.
    health = HealthMonitor(
        server,
        {
            "state": grpc_service_probe(backends.channels["state"]),
            "orchestrator": grpc_service_probe(backends.channels["orchestrator"]),
        },
        interval=settings.health_probe_seconds,
    )
    server.add(
        jobs_pb2_grpc.add_JobServiceServicer_to_server,
        JobServicer(
            backends,
            authenticator,
            parameter_limits=limits,
            max_list_limit=settings.max_list_limit,
            events_poll_seconds=settings.events_poll_seconds,
            stopping=streams_stopping,
            metrics=metrics,
        ),
        "coremachine.jobs.v1.JobService",
    )
    app = create_app(
        backends,
        authenticator,
        max_body_bytes=settings.max_body_bytes,
        parameter_limits=limits,
        max_list_limit=settings.max_list_limit,
        events_poll_seconds=settings.events_poll_seconds,
        queues=(settings.jobs_queue, settings.tasks_queue),
        stopping=streams_stopping,
        metrics=metrics,
    )
    if tracing.enabled():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # Server spans per request (no bodies, no headers: parameters stay out).
        FastAPIInstrumentor.instrument_app(app, excluded_urls="/api/health,/docs,/openapi.json")
    http = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            timeout_keep_alive=settings.keep_alive_seconds,
            # Open event streams must not hold shutdown up forever.
            timeout_graceful_shutdown=5,
        )
    )
    return GatewayApp(server, http, backends, secrets, telemetry, streams_stopping, health)
