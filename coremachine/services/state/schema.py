"""The state service's migrations and the queue's, applied together."""

from __future__ import annotations

from pathlib import Path

from coremachine.shared.brokers.postgres import migrate_queue_schema
from coremachine.shared.migrations import Ledger, check_schema, migrate

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LEDGER = Ledger(schema="coremachine")


async def migrate_state(conninfo: str) -> list[int]:
    """Applies the jobs/tasks schema migrations."""
    return await migrate(conninfo, MIGRATIONS_DIR, LEDGER)


async def migrate_all(state_url: str, broker_url: str | None) -> None:
    """Applies the state migrations, and the queue's when the broker is PostgreSQL."""
    await migrate_state(state_url)
    if broker_url:
        await migrate_queue_schema(broker_url)


__all__ = ["LEDGER", "MIGRATIONS_DIR", "check_schema", "migrate_all", "migrate_state"]
