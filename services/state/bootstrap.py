"""Composition root of the state service: the one place that picks adapters."""

from __future__ import annotations

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from coremachine.state.v1 import state_pb2_grpc
from services.state.admin import Admin
from services.state.janitor import Janitor
from services.state.outbox import Outbox, OutboxRelay
from services.state.schema import LEDGER, MIGRATIONS_DIR, check_schema, migrate_all
from services.state.servicer import StateServicer
from services.state.settings import StateSettings
from services.state.store import StateStore
from shared.broker import Broker
from shared.broker_factory import open_broker
from shared.grpc_server import GrpcServer


@dataclass
class StateApp:
    settings: StateSettings
    pool: AsyncConnectionPool
    broker: Broker
    store: StateStore
    relay: OutboxRelay
    janitor: Janitor
    server: GrpcServer

    async def close(self) -> None:
        await self.broker.close()
        await self.pool.close()


async def build(settings: StateSettings) -> StateApp:
    """Migrates (if configured), checks the schema, opens pool and broker."""
    broker_url = settings.broker_database_url or settings.database_url
    if settings.migrate_on_start:
        await migrate_all(
            settings.database_url, broker_url if settings.broker == "postgres" else None
        )
    pool = AsyncConnectionPool(
        settings.database_url,
        min_size=2,
        max_size=settings.pool_max_size,
        open=False,
        kwargs={"autocommit": True},
    )
    await pool.open(wait=True, timeout=30)
    async with pool.connection() as conn:
        await check_schema(conn, MIGRATIONS_DIR, LEDGER)
    broker = await open_broker(settings, settings.database_url)
    outbox = Outbox(settings.jobs_queue, settings.tasks_queue)
    relay = OutboxRelay(pool, broker, batch_size=settings.relay_batch_size)
    store = StateStore(pool, outbox, relay.notify)
    janitor = Janitor(
        pool,
        store,
        relay,
        interval=settings.janitor_interval_seconds,
        stall_seconds=settings.stage_stall_seconds,
        job_deadline_seconds=settings.job_deadline_seconds,
    )
    server = GrpcServer(settings.grpc_port)
    server.add(
        state_pb2_grpc.add_StateServiceServicer_to_server,
        StateServicer(store, Admin(pool, broker, store, settings)),
        "coremachine.state.v1.StateService",
    )
    return StateApp(settings, pool, broker, store, relay, janitor, server)
