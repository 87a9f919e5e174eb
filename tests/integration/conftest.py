"""A StateStore on a fresh migrated database (no relay: tests read the outbox)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.outbox import Outbox
from coremachine.services.state.store import StateStore


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    pool = AsyncConnectionPool(
        db_url, min_size=2, max_size=24, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    yield pool
    await pool.close()


@pytest.fixture
def store(pool: AsyncConnectionPool) -> StateStore:
    return StateStore(pool, Outbox("jobs", "tasks"))
