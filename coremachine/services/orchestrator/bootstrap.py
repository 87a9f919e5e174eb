"""Composition root of the orchestrator."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from coremachine.app._registry import Registry, load_registry
from coremachine.orchestrator.v1 import orchestrator_pb2_grpc
from coremachine.services.orchestrator.claim_check import StagePayloads
from coremachine.services.orchestrator.consumer import JobsConsumer
from coremachine.services.orchestrator.metrics import OrchestratorMetrics
from coremachine.services.orchestrator.planner import Planner, PlannerDefaults
from coremachine.services.orchestrator.registration import Registration
from coremachine.services.orchestrator.scheduler import Scheduler
from coremachine.services.orchestrator.servicer import OrchestratorServicer
from coremachine.services.orchestrator.settings import OrchestratorSettings
from coremachine.services.orchestrator.submission import Submitter
from coremachine.shared.blobstore import BlobStore
from coremachine.shared.broker import Broker
from coremachine.shared.broker_factory import open_broker
from coremachine.shared.domain.retry import RetryPolicy
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
    except PackageNotFoundError:  # running from a tree that is not installed
        return "unknown"


@dataclass
class OrchestratorApp:
    server: GrpcServer
    consumer: JobsConsumer
    registration: Registration
    scheduler: Scheduler | None
    broker: Broker
    state: GrpcStateClient
    blobs: BlobStore
    registry: Registry
    telemetry: Telemetry
    health: HealthMonitor

    async def close(self) -> None:
        self.consumer.planner.close()
        await self.broker.close()
        await self.state.close()
        await self.blobs.close()
        self.telemetry.close()


async def build(settings: OrchestratorSettings) -> OrchestratorApp:
    # Fail fast: an app that cannot be imported, a job type defined twice, a
    # stage whose task type no loaded app defines, a parameter model without
    # a JSON Schema, each stop the service here with a message naming it.
    registry = load_registry(settings.apps)
    telemetry = Telemetry.start(
        "orchestrator",
        metrics_port=settings.metrics_port,
        metrics_host=settings.metrics_host,
        version=coremachine_version(),
        broker=settings.broker,
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
    # The claim check's store: large task parameters out, large results back in.
    payloads, blobs = StagePayloads.from_settings(settings)
    defaults = PlannerDefaults(
        retry=RetryPolicy(
            max_attempts=settings.task_max_retries + 1,
            backoff_base_ms=settings.retry_base_ms,
            backoff_max_ms=settings.retry_max_ms,
        ),
        tasks_queue=settings.tasks_queue,
        chunk_size=settings.create_chunk_size,
    )
    planner = Planner(
        state,
        registry,
        defaults,
        payloads,
        OrchestratorMetrics(telemetry.registry),
        planning_threads=settings.planning_threads,
    )
    consumer = JobsConsumer(
        broker,
        settings.jobs_queue,
        state,
        registry,
        planner,
        orchestrator_id=settings.orchestrator_id,
        batch_size=settings.consumer_batch,
        concurrency=settings.consumer_concurrency,
    )
    registration = Registration(
        state,
        registry,
        settings.orchestrator_id,
        settings.registration_seconds,
        coremachine_version(),
    )
    scheduler = (
        Scheduler(
            state,
            Submitter(registry, state, planner),
            settings.orchestrator_id,
            poll_seconds=settings.scheduler_poll_seconds,
            lease_seconds=settings.scheduler_lease_seconds,
        )
        if settings.scheduler_enabled
        else None
    )
    server = GrpcServer(
        settings.grpc_port,
        tls=TlsConfig.from_settings(settings),
        interceptors=telemetry.server_interceptors(),
        max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
        # A submit needs the state service: while it is down, fail at once.
        refuse_while=("state",),
        # Replicas behind one DNS name: clients re-resolve at least this often.
        max_connection_age=300,
    )
    health = HealthMonitor(
        server,
        {
            "state": grpc_service_probe(state.channel),
            "broker": broker_probe(broker, settings.jobs_queue),
        },
        interval=settings.health_probe_seconds,
    )
    server.add(
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server,
        OrchestratorServicer(registry, state, planner, scheduler),
        "coremachine.orchestrator.v1.OrchestratorService",
    )
    return OrchestratorApp(
        server,
        consumer,
        registration,
        scheduler,
        broker,
        state,
        blobs,
        registry,
        telemetry,
        health,
    )
