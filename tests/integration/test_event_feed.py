"""Long-polling event readers are woken by the commit that adds an event."""

from __future__ import annotations

import asyncio
import time

import psycopg

from services.state.event_feed import EventFeed
from tests.integration.state_fixtures import make_job


async def test_a_waiting_reader_wakes_when_its_job_gets_an_event(db_url, store):
    feed = EventFeed(lambda: psycopg.AsyncConnection.connect(db_url, autocommit=True))
    stopping = asyncio.Event()
    runner = asyncio.create_task(feed.run(stopping))
    try:
        job_id = await make_job(store)
        other = await make_job(store)
        await asyncio.sleep(0.3)  # let LISTEN take effect (the point of the test is the wake-up)
        waiter = asyncio.create_task(feed.wait(job_id, timeout=20))
        await asyncio.sleep(0.1)
        await store.cancel_job(other, "another job's event must not wake it")
        await asyncio.sleep(0.3)
        assert not waiter.done()
        started = time.monotonic()
        await store.cancel_job(job_id, "wake up")
        await asyncio.wait_for(waiter, 10)
        assert time.monotonic() - started < 5  # woken, not timed out (20 s)
    finally:
        stopping.set()
        await runner
