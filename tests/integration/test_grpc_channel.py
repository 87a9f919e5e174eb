"""Internal channels retry UNAVAILABLE by their service config, over every
replica listed in one target, and give every call a deadline."""

from __future__ import annotations

import asyncio
import json

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from coremachine.shared.errors import Unavailable
from coremachine.shared.grpc_channel import _CLIENT_OPTIONS, open_channel, service_config
from coremachine.shared.grpc_errors import map_errors
from coremachine.shared.grpc_server import CHANNEL_OPTIONS, CLIENT_KEEPALIVE_MS, server_options


class FlakyHealth(health_pb2_grpc.HealthServicer):
    """UNAVAILABLE for the first `failures` calls, then SERVING."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    @map_errors
    async def Check(self, request, context):
        self.calls += 1
        if self.calls <= self.failures:
            raise Unavailable("database restarting")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def serve(servicer) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def test_unavailable_is_retried_without_the_caller_knowing():
    flaky = FlakyHealth(failures=2)
    server, port = await serve(flaky)
    try:
        async with open_channel(f"127.0.0.1:{port}") as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest()
            )
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        assert flaky.calls == 3
    finally:
        await server.stop(0)


async def test_one_target_spreads_calls_over_every_replica():
    replicas = [FlakyHealth(failures=0) for _ in range(2)]
    servers = [await serve(r) for r in replicas]
    target = "ipv4:" + ",".join(f"127.0.0.1:{port}" for _, port in servers)
    try:
        async with open_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(20):
                await stub.Check(health_pb2.HealthCheckRequest())
        assert all(r.calls >= 5 for r in replicas), [r.calls for r in replicas]
    finally:
        for server, _ in servers:
            await server.stop(0)


def test_every_method_has_a_deadline_and_the_config_is_the_one_given_to_grpc():
    config = service_config()
    assert all(m["timeout"].endswith("s") for m in config["methodConfig"])
    assert {"name": [{}]} in [{"name": m["name"]} for m in config["methodConfig"]]
    given = dict(_CLIENT_OPTIONS)["grpc.service_config"]
    assert json.loads(given) == config


async def _watch_survives_keepalive_pings(server_opts: list) -> bool:
    """Holds a quiet server stream open while the client pings every second; True if it lasts."""
    server = grpc.aio.server(options=server_opts)
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client_opts = [
        ("grpc.keepalive_time_ms", 1000),
        ("grpc.http2.max_pings_without_data", 0),  # keep pinging while no data flows
    ]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=client_opts) as channel:
            call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            await call.read()  # the current status; then nothing until it changes
            await asyncio.sleep(4.5)
            lasted = not call.done()
            call.cancel()
            return lasted
    finally:
        await server.stop(0)


async def test_servers_accept_the_keepalive_pings_their_clients_send():
    # gRPC's defaults answer early pings with GOAWAY "too_many_pings", which
    # ends a long event watch with UNAVAILABLE; the services' options do not.
    assert not await _watch_survives_keepalive_pings(list(CHANNEL_OPTIONS))
    assert await _watch_survives_keepalive_pings(server_options(client_keepalive_ms=1000))
    assert dict(_CLIENT_OPTIONS)["grpc.keepalive_time_ms"] == CLIENT_KEEPALIVE_MS
