"""Composition root of the orchestrator."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from coremachine.orchestrator.v1 import orchestrator_pb2_grpc
from coremachine.services.orchestrator.claim_check import StagePayloads
from coremachine.services.orchestrator.consumer import JobsConsumer
from coremachine.services.orchestrator.jobs.catalog import build_registry
from coremachine.services.orchestrator.planner import Planner
from coremachine.services.orchestrator.servicer import OrchestratorServicer
from coremachine.services.orchestrator.settings import OrchestratorSettings
from coremachine.shared.blobstore import BlobStore
from coremachine.shared.broker import Broker
from coremachine.shared.broker_factory import open_broker
from coremachine.shared.grpc_channel import open_channel
from coremachine.shared.grpc_server import GrpcServer
from coremachine.shared.grpc_tls import TlsConfig
from coremachine.shared.health_monitor import HealthMonitor, broker_probe, grpc_service_probe
from coremachine.state.v1 import state_pb2_grpc


@dataclass
class OrchestratorApp:
    server: GrpcServer
    consumer: JobsConsumer
    broker: Broker
    channel: grpc.aio.Channel
    blobs: BlobStore
    health: HealthMonitor

    async def close(self) -> None:
        await self.broker.close()
        await self.channel.close()
        await self.blobs.close()


async def build(settings: OrchestratorSettings) -> OrchestratorApp:
    registry = build_registry(settings)
    registry.check()  # fail fast: every stage's task type must be handled by workers
    channel = open_channel(settings.state_address, tls=TlsConfig.from_settings(settings))
    state = state_pb2_grpc.StateServiceStub(channel)
    broker = await open_broker(settings)
    # The claim check's store: large task parameters out, large results back in.
    payloads, blobs = StagePayloads.from_settings(settings)
    planner = Planner(state, settings.create_chunk_size, payloads)
    consumer = JobsConsumer(
        broker, settings.jobs_queue, state, registry, planner, settings.consumer_batch
    )
    server = GrpcServer(
        settings.grpc_port,
        tls=TlsConfig.from_settings(settings),
        max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
        # A submit needs the state service: while it is down, fail at once.
        refuse_while=("state",),
        # Replicas behind one DNS name: clients re-resolve at least this often.
        max_connection_age=300,
    )
    health = HealthMonitor(
        server,
        {"state": grpc_service_probe(channel), "broker": broker_probe(broker, settings.jobs_queue)},
        interval=settings.health_probe_seconds,
    )
    server.add(
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server,
        OrchestratorServicer(registry, state, planner),
        "coremachine.orchestrator.v1.OrchestratorService",
    )
    return OrchestratorApp(server, consumer, broker, channel, blobs, health)
