"""`python -m services.api_gateway`: HTTP and the public gRPC API in one process."""

from __future__ import annotations

import asyncio

import uvicorn

from coremachine.jobs.v1 import jobs_pb2_grpc
from services.api_gateway.backends import Backends
from services.api_gateway.http_app import create_app
from services.api_gateway.servicer import JobServicer
from services.api_gateway.settings import GatewaySettings
from shared.grpc_server import GrpcServer, serve_until_signalled
from shared.logging_setup import configure_logging


async def serve(settings: GatewaySettings) -> None:
    backends = Backends.connect(
        settings.state_address, settings.orchestrator_address, settings.worker_address
    )
    server = GrpcServer(settings.grpc_port)
    server.add(
        jobs_pb2_grpc.add_JobServiceServicer_to_server,
        JobServicer(backends),
        "coremachine.jobs.v1.JobService",
    )
    http = uvicorn.Server(
        uvicorn.Config(
            create_app(backends, settings.max_body_bytes),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
        )
    )
    # uvicorn captures SIGTERM/SIGINT while it serves and re-raises them when it
    # stops, so the signal reaches serve_until_signalled after HTTP has drained.

    async def run_http(stopping: asyncio.Event) -> None:
        serving = asyncio.create_task(http.serve())
        await stopping.wait()
        http.should_exit = True
        await serving

    await serve_until_signalled(server, background=[run_http], on_shutdown=backends.close)


def main() -> None:
    settings = GatewaySettings()
    configure_logging("api_gateway", settings.log_level, settings.log_format)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
