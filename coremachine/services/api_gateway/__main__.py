"""`python -m coremachine.services.api_gateway`: HTTP and the public gRPC API in one process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import secrets as secrets_module

import uvicorn

from coremachine.jobs.v1 import jobs_pb2_grpc
from coremachine.services.api_gateway.auth import (
    ApiKeyAuthenticator,
    Authenticator,
    DisabledAuthenticator,
    Role,
    hash_key,
)
from coremachine.services.api_gateway.backends import Backends
from coremachine.services.api_gateway.http_app import create_app
from coremachine.services.api_gateway.params import ParameterLimits
from coremachine.services.api_gateway.servicer import JobServicer
from coremachine.services.api_gateway.settings import GatewaySettings
from coremachine.shared.background import Background
from coremachine.shared.grpc_server import GrpcServer, serve_until_signalled
from coremachine.shared.health_monitor import HealthMonitor, grpc_service_probe
from coremachine.shared.logging_setup import configure_logging
from coremachine.shared.secrets import CachedSecrets, SecretsProvider
from coremachine.shared.secrets_providers import open_secrets_provider

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


async def serve(settings: GatewaySettings) -> None:
    authenticator, secrets = await open_authenticator(settings)
    backends = Backends.connect(
        settings.state_address, settings.orchestrator_address, settings.worker_address
    )
    limits = ParameterLimits(settings.max_parameter_bytes, settings.max_parameter_depth)
    # Set at shutdown: open event streams (SSE and WatchJob) end at once, so
    # clients resume elsewhere instead of holding the shutdown up.
    streams_stopping = asyncio.Event()
    server = GrpcServer(settings.grpc_port, max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs)
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
    )
    http = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
            # Open event streams must not hold shutdown up forever.
            timeout_graceful_shutdown=5,
        )
    )
    # uvicorn captures SIGTERM/SIGINT while it serves and re-raises them when it
    # stops, so the signal reaches serve_until_signalled after HTTP has drained.

    async def run_http(stopping: asyncio.Event) -> None:
        serving = asyncio.create_task(http.serve())
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
        streams_stopping.set()
        http.should_exit = True
        await serving

    async def shutdown() -> None:
        await backends.close()
        if secrets is not None:
            await secrets.close()

    await serve_until_signalled(
        server,
        # The HTTP server is bound to its port and is why this process exists:
        # if it stops, the process exits non-zero for its supervisor to restart.
        background=[health.run, Background(run_http, name="http", restart=False)],
        on_shutdown=shutdown,
    )


def keygen(name: str, role: str) -> None:
    """Prints a new API key once, and the entry to add to the `api-keys` secret."""
    roles = [r.name.lower() for r in Role]
    if role not in roles:
        raise SystemExit(f"role must be one of {', '.join(roles)}")
    key = secrets_module.token_urlsafe(32)
    print(f"API key (shown once, give it to the client): {key}")
    print("Add to the JSON list in the `api-keys` secret (Key Vault, or API_KEYS locally):")
    print(json.dumps({"name": name, "role": role, "sha256": hash_key(key)}))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m coremachine.services.api_gateway")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve HTTP and gRPC (the default)")
    new_key = commands.add_parser("keygen", help="make an API key and its hashed secret entry")
    new_key.add_argument("--name", required=True)
    new_key.add_argument("--role", required=True, help="reader, submitter or admin")
    args = parser.parse_args()
    if args.command == "keygen":
        keygen(args.name, args.role)
        return
    settings = GatewaySettings()
    configure_logging("api_gateway", settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
