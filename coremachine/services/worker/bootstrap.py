"""Composition root of the worker."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from coremachine.services.worker.claim_check import TaskPayloads
from coremachine.services.worker.consumer import TaskConsumer
from coremachine.services.worker.registry import HANDLERS, check_handlers
from coremachine.services.worker.settings import WorkerSettings
from coremachine.shared.blobstore import BlobStore
from coremachine.shared.broker import Broker
from coremachine.shared.broker_factory import open_broker
from coremachine.shared.grpc_channel import open_channel
from coremachine.shared.grpc_server import GrpcServer
from coremachine.shared.grpc_tls import TlsConfig
from coremachine.shared.health_monitor import HealthMonitor, broker_probe, grpc_service_probe
from coremachine.state.v1 import state_pb2_grpc


@dataclass
class WorkerApp:
    server: GrpcServer
    consumer: TaskConsumer
    broker: Broker
    channel: grpc.aio.Channel
    blobs: BlobStore
    health: HealthMonitor

    async def close(self) -> None:
        await self.broker.close()
        await self.channel.close()
        await self.blobs.close()


async def build(settings: WorkerSettings) -> WorkerApp:
    check_handlers()  # fail fast: a handler for every task type of the contract
    channel = open_channel(settings.state_address, tls=TlsConfig.from_settings(settings))
    state = state_pb2_grpc.StateServiceStub(channel)
    broker = await open_broker(settings)
    payloads, blobs = TaskPayloads.from_settings(settings)
    consumer = TaskConsumer(
        broker,
        settings.tasks_queue,
        state,
        dict(HANDLERS),
        worker_id=settings.worker_id,
        concurrency=settings.concurrency,
        receive_batch=settings.receive_batch,
        completion_batch=settings.completion_batch,
        lease_seconds=settings.lease_seconds,
        lock_seconds=settings.broker_lock_seconds,
        shutdown_grace=settings.shutdown_grace_seconds,
        blobs=blobs,
        payloads=payloads,
    )
    # The worker serves only health and reflection: probes and grpcurl.
    server = GrpcServer(
        settings.grpc_port,
        tls=TlsConfig.from_settings(settings),
        max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
    )
    health = HealthMonitor(
        server,
        {
            "state": grpc_service_probe(channel),
            "broker": broker_probe(broker, settings.tasks_queue),
        },
        interval=settings.health_probe_seconds,
    )
    return WorkerApp(server, consumer, broker, channel, blobs, health)
