"""Composition root of the state service: the one place that picks adapters."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from psycopg.conninfo import make_conninfo
from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.admin import Admin
from coremachine.services.state.definitions_store import DefinitionStore
from coremachine.services.state.diagnosis import Diagnoser
from coremachine.services.state.event_feed import EventFeed
from coremachine.services.state.janitor import Janitor
from coremachine.services.state.metrics import QueueGauges, StateMetrics
from coremachine.services.state.outbox import Outbox, OutboxRelay
from coremachine.services.state.schema import LEDGER, MIGRATIONS_DIR, check_schema, migrate_all
from coremachine.services.state.servicer import StateServicer
from coremachine.services.state.settings import StateSettings
from coremachine.services.state.store import StateStore
from coremachine.services.state.workers_store import WorkerStore
from coremachine.shared.broker import Broker
from coremachine.shared.broker_factory import open_broker
from coremachine.shared.database_credentials import DatabaseCredentials
from coremachine.shared.grpc_server import GrpcServer
from coremachine.shared.grpc_tls import TlsConfig
from coremachine.shared.health_monitor import DatabaseProbe, HealthMonitor, broker_probe
from coremachine.shared.metrics import broker_pools
from coremachine.shared.pg_pool import open_pool
from coremachine.shared.secrets import CachedSecrets, SecretsProvider
from coremachine.shared.secrets_providers import open_secrets_provider
from coremachine.shared.telemetry import Telemetry
from coremachine.state.v1 import state_pb2_grpc


@dataclass
class StateApp:
    settings: StateSettings
    pool: AsyncConnectionPool
    broker: Broker
    store: StateStore
    relay: OutboxRelay
    janitor: Janitor
    feed: EventFeed
    server: GrpcServer
    health: HealthMonitor
    database_probe: DatabaseProbe
    credentials: DatabaseCredentials
    secrets: SecretsProvider
    telemetry: Telemetry
    queue_gauges: QueueGauges

    async def close(self) -> None:
        await self.database_probe.close()
        await self.broker.close()
        await self.pool.close()
        await self.credentials.close()
        await self.secrets.close()
        self.telemetry.close()


def coremachine_version() -> str:
    try:
        return version("coremachine")
    except PackageNotFoundError:
        return "unknown"


def open_credentials(settings: StateSettings) -> tuple[DatabaseCredentials, SecretsProvider]:
    """The database password (URL, secrets provider) or Entra token, per connection."""
    secrets = CachedSecrets(
        open_secrets_provider(
            settings.secrets_provider,
            secrets_dir=settings.secrets_dir,
            key_vault_url=settings.key_vault_url,
        ),
        settings.secrets_cache_seconds,
    )
    return DatabaseCredentials(
        settings.database_url, auth=settings.database_auth, secrets=secrets
    ), secrets


async def current_conninfo(credentials: DatabaseCredentials) -> str:
    """DATABASE_URL with the credentials valid now (for one-off connections)."""
    return make_conninfo(credentials.conninfo, **await credentials.connect_kwargs())


async def build(settings: StateSettings) -> StateApp:
    """Migrates (if configured), checks the schema, opens pool and broker."""
    # First: the gRPC server and the stores take their instruments from it.
    telemetry = Telemetry.start(
        "state",
        metrics_port=settings.metrics_port,
        metrics_host=settings.metrics_host,
        version=coremachine_version(),
        broker=settings.broker,
    )
    credentials, secrets = open_credentials(settings)
    database_url = await current_conninfo(credentials)
    broker_url = settings.broker_database_url or database_url
    if settings.migrate_on_start:
        await migrate_all(database_url, broker_url if settings.broker == "postgres" else None)
    # Credentials are resolved per new connection: a pool reconnecting hours
    # later uses a rotated password or a fresh Entra token.
    pool = open_pool(
        credentials.conninfo,
        min_size=2,
        max_size=settings.pool_max_size,
        kwargs=credentials.pool_kwargs(autocommit=True),
        timeout=settings.pool_timeout_seconds,
        max_waiting=settings.pool_max_waiting,
        name="state",
    )
    await pool.open(wait=True, timeout=30)
    async with pool.connection() as conn:
        await check_schema(conn, MIGRATIONS_DIR, LEDGER)
    broker = await open_broker(settings, database_url)
    outbox = Outbox(
        settings.jobs_queue,
        settings.tasks_queue,
        settings.uses_direct_enqueue(),
        settings.broker_priority_aging_seconds,
    )
    relay = OutboxRelay(pool, broker, batch_size=settings.relay_batch_size)
    # In direct mode nothing goes through the outbox table: waking the relay
    # after every commit would only cost an empty query per operation.
    poke_relay = (lambda: None) if outbox.direct else relay.notify
    metrics = StateMetrics(telemetry.registry)
    telemetry.add_pools(lambda: [("state", pool), *broker_pools(broker)])
    store = StateStore(pool, outbox, poke_relay, metrics)
    janitor = Janitor(
        pool,
        store,
        relay,
        interval=settings.janitor_interval_seconds,
        stall_seconds=settings.stage_stall_seconds,
        resend_seconds=settings.task_resend_seconds,
        job_deadline_seconds=settings.job_deadline_seconds,
    )
    feed = EventFeed(lambda: credentials.connect(autocommit=True))
    definitions = DefinitionStore(pool, outbox, poke_relay)
    workers = WorkerStore(pool)
    admin = Admin(pool, broker, store, settings)
    server = GrpcServer(
        settings.grpc_port,
        tls=TlsConfig.from_settings(settings),
        interceptors=telemetry.server_interceptors(),
        max_concurrent_rpcs=settings.grpc_max_concurrent_rpcs,
        # Every call needs the database: while it is down, fail them at once.
        refuse_while=("database",),
        # Replicas behind one DNS name: clients re-resolve at least this often.
        max_connection_age=300,
    )
    database = DatabaseProbe(lambda: credentials.connect(autocommit=True, connect_timeout=2))
    health = HealthMonitor(
        server,
        {"database": database, "broker": broker_probe(broker, settings.jobs_queue)},
        interval=settings.health_probe_seconds,
    )
    server.add(
        state_pb2_grpc.add_StateServiceServicer_to_server,
        StateServicer(
            store,
            admin,
            feed,
            definitions,
            workers,
            Diagnoser(pool, store, broker, workers, settings.janitor_interval_seconds),
        ),
        "coremachine.state.v1.StateService",
    )
    gauges = QueueGauges(
        metrics, broker, store.queues_in_use, workers.list, settings.metrics_queue_seconds
    )
    return StateApp(
        settings,
        pool,
        broker,
        store,
        relay,
        janitor,
        feed,
        server,
        health,
        database,
        credentials,
        secrets,
        telemetry,
        gauges,
    )
