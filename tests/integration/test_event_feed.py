"""Long-polling event readers are woken by the commit that adds an event,
and only by events of the level they wait for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from coremachine.services.state.event_feed import EventFeed, Level
from coremachine.services.state.servicer import StateServicer
from coremachine.state.v1 import state_pb2
from tests.integration.state_fixtures import claim_stage, make_job, make_stage


@pytest.fixture
async def feed(db_url: str) -> AsyncIterator[EventFeed]:
    """A running feed, its LISTEN in place (the point of these tests is the wake-up)."""
    feed = EventFeed(lambda: psycopg.AsyncConnection.connect(db_url, autocommit=True))
    stopping = asyncio.Event()
    runner = asyncio.create_task(feed.run(stopping))
    await asyncio.sleep(0.3)
    try:
        yield feed
    finally:
        stopping.set()
        await runner


@pytest.fixture
def servicer(store, feed: EventFeed) -> StateServicer:
    return StateServicer(store, admin=None, feed=feed)  # type: ignore[arg-type]


async def test_a_waiting_reader_wakes_when_its_job_gets_an_event(feed, store):
    job_id = await make_job(store)
    other = await make_job(store)
    await asyncio.sleep(0.3)  # their job_created notifications have come and gone
    waiter = asyncio.create_task(feed.wait(job_id, timeout=20))
    await asyncio.sleep(0.1)
    await store.cancel_job(other, "another job's event must not wake it")
    await asyncio.sleep(0.3)
    assert not waiter.done()
    started = time.monotonic()
    await store.cancel_job(job_id, "wake up")
    await asyncio.wait_for(waiter, 10)
    assert time.monotonic() - started < 5  # woken, not timed out (20 s)


async def test_a_job_level_reader_sleeps_through_task_events(feed, store):
    # A progress display reads job-level events only: each task's events must
    # not wake it (on a busy job that was a wasted read every few milliseconds).
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 2)
    await asyncio.sleep(0.3)  # the stage_started notification has come and gone
    job_level = asyncio.create_task(feed.wait(job_id, timeout=20, level=Level.JOB))
    every_event = asyncio.create_task(feed.wait(job_id, timeout=20))
    await asyncio.sleep(0.1)
    await claim_stage(store, job_id, 1)  # task_started events only
    await asyncio.wait_for(every_event, 10)
    await asyncio.sleep(0.3)
    assert not job_level.done()
    await store.cancel_job(job_id, "a job-level event")
    await asyncio.wait_for(job_level, 10)


async def test_a_job_level_long_poll_returns_with_the_next_job_level_event(servicer, store):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 2)
    events = (await store.events_page(job_id, 0, 1000)).events
    request = state_pb2.ListEventsRequest(
        job_id=job_id, after_seq=events[-1].seq, wait_ms=20_000, job_level_only=True
    )
    poll = asyncio.create_task(servicer.ListEvents(request, None))
    await asyncio.sleep(0.1)
    await claim_stage(store, job_id, 1)  # task events: no answer yet, keep waiting
    await asyncio.sleep(0.3)
    assert not poll.done()
    await store.cancel_job(job_id, "a job-level event")
    response = await asyncio.wait_for(poll, 10)
    assert [e.event_type for e in response.events] == ["job_cancelled"]
    assert all(not e.task_id for e in response.events)


async def test_an_end_only_long_poll_sleeps_until_the_job_ends(servicer, feed, store):
    job_id = await make_job(store)
    request = state_pb2.ListEventsRequest(job_id=job_id, wait_ms=20_000, end_only=True)
    poll = asyncio.create_task(servicer.ListEvents(request, None))
    job_level = asyncio.create_task(feed.wait(job_id, timeout=20, level=Level.JOB))
    await asyncio.sleep(0.1)
    await make_stage(store, job_id, 1, 2)  # a stage_started event: job-level
    await claim_stage(store, job_id, 1)  # task events
    await asyncio.wait_for(job_level, 10)
    await asyncio.sleep(0.3)
    assert not poll.done()
    await store.cancel_job(job_id, "the end")
    response = await asyncio.wait_for(poll, 10)
    assert [e.event_type for e in response.events] == ["job_cancelled"]
    # The last page of an ended job brings the job along, for the waiter.
    assert response.complete and response.job.job_id == job_id
    assert response.job.error == "the end"
