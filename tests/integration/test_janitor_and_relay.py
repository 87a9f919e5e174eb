"""Guarantees 2 and 6: the outbox relay loses nothing, and the janitor (one
leader) reclaims expired leases, advances stalled stages and times out jobs."""

from __future__ import annotations

import uuid

import pytest

from coremachine.services.state.janitor import Janitor
from coremachine.services.state.outbox import Outbox, OutboxRelay
from coremachine.services.state.store import StateStore
from coremachine.shared.brokers.postgres import PostgresBroker
from tests.integration.state_fixtures import claim_stage, make_job, make_stage, ok, outbox_ids


@pytest.fixture
async def broker(db_url):
    broker = await PostgresBroker(db_url, lock_duration=30).open()
    yield broker
    await broker.close()


def janitor(pool, store, relay, holder: str, deadline: float = 3600) -> Janitor:
    return Janitor(
        pool,
        store,
        relay,
        interval=1,
        stall_seconds=0,
        job_deadline_seconds=deadline,
        holder=holder,
    )


class CrashAfterSend:
    """A broker that sends, then 'crashes' before the relay can commit."""

    def __init__(self, inner):
        self.inner = inner

    async def send(self, queue, messages):
        await self.inner.send(queue, messages)
        raise ConnectionError("relay process died after sending")


async def test_relay_crash_after_send_resends_and_the_queue_keeps_one_copy(
    pool, store, broker, pg_conn
):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 5)
    pending = await outbox_ids(pg_conn)
    with pytest.raises(ConnectionError):
        await OutboxRelay(pool, CrashAfterSend(broker)).relay_once()
    assert await outbox_ids(pg_conn) == pending  # rolled back: nothing marked sent
    assert await OutboxRelay(pool, broker).relay_once() == len(pending)
    assert await outbox_ids(pg_conn) == []
    received = await broker.receive("tasks", 100, max_wait=1)
    assert sorted(m.message_id for m in received) == sorted(p for p in pending if "-s1-" in p)


async def test_only_one_janitor_is_leader(pool, store, broker):
    relay = OutboxRelay(pool, broker)
    first, second = janitor(pool, store, relay, "a"), janitor(pool, store, relay, "b")
    assert await first.is_leader()
    assert not await second.is_leader()
    assert await first.is_leader()  # renewal by the holder


async def test_janitor_reclaims_expired_leases_with_the_next_attempt(pool, store, broker, pg_conn):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 2)
    claimed = await claim_stage(store, job_id, 1)
    await pg_conn.execute(
        "UPDATE coremachine.tasks SET lease_expires_at = now() - interval '1 second'"
        " WHERE task_id = %s",
        (claimed[0][0],),
    )
    report = await janitor(pool, store, OutboxRelay(pool, broker), "j").sweep()
    assert report.leases_reclaimed == 1
    cur = await pg_conn.execute(
        "SELECT status::text, attempt FROM coremachine.tasks WHERE task_id = %s", (claimed[0][0],)
    )
    assert await cur.fetchone() == ("queued", 2)
    cur = await pg_conn.execute("SELECT actions FROM coremachine.janitor_runs ORDER BY run_id DESC")
    assert (await cur.fetchone())[0]["leases_reclaimed"] == 1  # the sweep is recorded


async def test_janitor_advances_a_stage_whose_advancement_was_lost(pool, store, broker, pg_conn):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 3)
    await claim_stage(store, job_id, 1)
    # Simulate a lost advancement: tasks done, but the counter says one remains.
    await pg_conn.execute(
        "UPDATE coremachine.tasks SET status = 'completed', lease_token = NULL WHERE job_id = %s",
        (job_id,),
    )
    await pg_conn.execute("DELETE FROM coremachine.outbox")
    j = janitor(pool, store, OutboxRelay(pool, broker), "j")
    report = await j.sweep()
    assert report.stages_advanced == 1
    again = await j.sweep()
    assert again.stages_advanced == 0  # advancing is a CAS: never twice
    received = await broker.receive("jobs", 10, max_wait=1)
    assert [m.message_id for m in received] == [f"{job_id}:stage:2"]


async def test_janitor_fails_jobs_past_their_deadline_with_a_reason(pool, store, broker):
    job_id = await make_job(store)
    report = await janitor(pool, store, OutboxRelay(pool, broker), "j", deadline=0.001).sweep()
    assert report.jobs_timed_out >= 1
    job = (await store.get_job(job_id)).job
    assert job.status == "failed" and "deadline" in job.error_details


async def test_completions_after_reclaim_by_the_janitor_count_once(pool, store, broker, pg_conn):
    job_id = await make_job(store, total_stages=1)
    await make_stage(store, job_id, 1, 1)
    [(task_id, token)] = (await claim_stage(store, job_id, 1)).values()
    await pg_conn.execute(
        "UPDATE coremachine.tasks SET lease_expires_at = now() - interval '1 second'"
    )
    await janitor(pool, store, OutboxRelay(pool, broker), f"j{uuid.uuid4()}").sweep()
    [late], stages = await store.complete_tasks([ok(task_id, token)])
    assert not late.accepted and stages == []


async def test_janitor_leaves_a_stage_alone_while_outcomes_keep_arriving(
    pool, store, broker, pg_conn
):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 2)
    claimed = await claim_stage(store, job_id, 1)
    await store.complete_tasks([ok(*claimed[0])])  # counted just now
    # A drifted counter (the only way a stage stalls): every task terminal, one "remaining".
    await pg_conn.execute(
        "UPDATE coremachine.tasks SET status = 'completed', lease_token = NULL WHERE job_id = %s",
        (job_id,),
    )
    j = Janitor(
        pool,
        store,
        OutboxRelay(pool, broker),
        interval=1,
        stall_seconds=60,
        job_deadline_seconds=3600,
        holder="j",
    )
    assert (await j.sweep()).stages_advanced == 0  # busy a moment ago: not examined
    await pg_conn.execute(
        "UPDATE coremachine.job_stages SET last_counted_at = now() - interval '2 minutes',"
        " started_at = now() - interval '2 minutes' WHERE job_id = %s",
        (job_id,),
    )
    assert (await j.sweep()).stages_advanced == 1


async def test_a_queued_task_whose_message_is_gone_gets_it_again(pool, broker, pg_conn):
    # Direct mode: the task messages go into the queue table with the state change.
    store = StateStore(pool, Outbox("jobs", "tasks", direct=True))
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 3)
    lost = f"{job_id}-s1-1:1"
    await pg_conn.execute("DELETE FROM broker.messages WHERE message_id = %s", (lost,))
    # The stage has been quiet (nothing counted) and its tasks queued for a while.
    await pg_conn.execute(
        "UPDATE coremachine.job_stages SET started_at = now() - interval '2 minutes'"
        " WHERE job_id = %s",
        (job_id,),
    )
    await pg_conn.execute(
        "UPDATE coremachine.tasks SET updated_at = now() - interval '2 minutes' WHERE job_id = %s",
        (job_id,),
    )
    sweeper = Janitor(
        pool,
        store,
        OutboxRelay(pool, broker),
        interval=1,
        stall_seconds=3600,
        job_deadline_seconds=3600,
        resend_seconds=60,
        holder="janitor-test",
    )
    report = await sweeper.sweep()
    assert report.messages_resent == 1
    assert report.details == [f"re-sent the lost message of {job_id}-s1-1"]
    cur = await pg_conn.execute(
        "SELECT message_id, count(*) FROM broker.messages WHERE queue = 'tasks'"
        " GROUP BY message_id ORDER BY message_id"
    )
    assert await cur.fetchall() == [(f"{job_id}-s1-{i}:1", 1) for i in range(3)]
    # Re-sent once: the next sweep does not send it again.
    assert (await sweeper.sweep()).messages_resent == 0


async def test_a_stage_that_moves_or_a_message_still_there_is_left_alone(pool, broker, pg_conn):
    store = StateStore(pool, Outbox("jobs", "tasks", direct=True))
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 2)
    await pg_conn.execute(
        "UPDATE coremachine.tasks SET updated_at = now() - interval '2 minutes' WHERE job_id = %s",
        (job_id,),
    )
    sweeper = Janitor(
        pool,
        store,
        OutboxRelay(pool, broker),
        interval=1,
        stall_seconds=3600,
        job_deadline_seconds=3600,
        resend_seconds=60,
        holder="janitor-test",
    )
    # The stage started just now: not quiet, not examined.
    assert (await sweeper.sweep()).messages_resent == 0
    await pg_conn.execute(
        "UPDATE coremachine.job_stages SET started_at = now() - interval '2 minutes'"
        " WHERE job_id = %s",
        (job_id,),
    )
    # Quiet, but both messages are in the queue: nothing to re-send.
    assert (await sweeper.sweep()).messages_resent == 0
