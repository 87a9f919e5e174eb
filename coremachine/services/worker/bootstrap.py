"""Composition root of the worker."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from coremachine.app import AppError
from coremachine.app._registry import Registry, load_registry
from coremachine.services.worker.claim_check import TaskPayloads
from coremachine.services.worker.consumer import TaskConsumer
from coremachine.services.worker.metrics import WorkerMetrics
from coremachine.services.worker.presence import Presence
from coremachine.services.worker.settings import WorkerSettings
from coremachine.shared.blobstore import BlobStore
from coremachine.shared.broker import Broker
from coremachine.shared.broker_factory import open_broker
from coremachine.shared.grpc_channel import open_channel
from coremachine.shared.grpc_server import GrpcServer
from coremachine.shared.grpc_tls import TlsConfig
from coremachine.shared.health_monitor import HealthMonitor, broker_probe, grpc_service_probe
from coremachine.shared.metrics import broker_pools
from coremachine.shared.state_clients.grpc import GrpcStateClient
from coremachine.shared.telemetry import Telemetry


def coremachine_version() -> str:
    try:
        return version("coremachine")
    except PackageNotFoundError:
        return "unknown"


@dataclass
class WorkerApp:
    server: GrpcServer
    consumer: TaskConsumer
    presence: Presence
    broker: Broker
    state: GrpcStateClient
    blobs: BlobStore
    registry: Registry
    telemetry: Telemetry
    health: HealthMonitor

    async def close(self) -> None:
        await self.broker.close()
        await self.state.close()
        await self.blobs.close()
        self.telemetry.close()


async def build(settings: WorkerSettings) -> WorkerApp:
    # Fail fast: the apps must import and check (see coremachine.app), and
    # define at least one handler for this worker to run.
    registry = load_registry(settings.apps)
    handlers = registry.handlers()
    if not handlers:
        raise AppError(
            "the loaded apps define no task handler for this worker to run"
            f" (apps: {', '.join(a.name for a in registry.apps)})"
        )
    telemetry = Telemetry.start(
        "worker",
        metrics_port=settings.metrics_port,
        metrics_host=settings.metrics_host,
        version=coremachine_version(),
        broker=settings.broker,
        instance=settings.worker_id,
    )
    state = GrpcStateClient(
        open_channel(
            settings.state_address,
            tls=TlsConfig.from_settings(settings),
            interceptors=telemetry.client_interceptors(),
        )
    )
    broker = await open_broker(settings)
    telemetry.add_pools(lambda: broker_pools(broker))
    metrics = WorkerMetrics(telemetry.registry)
    payloads, blobs = TaskPayloads.from_settings(settings)
    consumer = TaskConsumer(
        broker,
        settings.queue_names(),
        state,
        handlers,
        worker_id=settings.worker_id,
        concurrency=settings.concurrency,
        receive_batch=settings.receive_batch,
        completion_batch=settings.completion_batch,
        lease_seconds=settings.lease_seconds,
        lock_seconds=settings.broker_lock_seconds,
        shutdown_grace=settings.shutdown_grace_seconds,
        blobs=blobs,
        payloads=payloads,
        threads=settings.threads,
        unknown_task_deliveries=settings.unknown_task_deliveries,
        metrics=metrics,
    )
    metrics.watch_load(lambda: len(consumer.in_flight), settings.concurrency)
    presence = Presence(
        state,
        worker_id=settings.worker_id,
        queues=settings.queue_names(),
        task_types=list(handlers),
        concurrency=settings.concurrency,
        version=coremachine_version(),
        interval=settings.heartbeat_seconds,
        in_flight=lambda: len(consumer.in_flight),
    )
    # The worker serves only health and reflection: probes and grpcurl.
    server = GrpcServer(
        settings.grpc_port,
        tls=TlsConfig.from_settings(settings),
        interceptors=telemetry.server_interceptors(),
        max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
    )
    health = HealthMonitor(
        server,
        {
            "state": grpc_service_probe(state.channel),
            "broker": broker_probe(broker, settings.queue_names()[0]),
        },
        interval=settings.health_probe_seconds,
    )
    return WorkerApp(server, consumer, presence, broker, state, blobs, registry, telemetry, health)
