"""Guarantees 3 and 4: exactly-once effect, fencing of stale attempts, retries,
failure policy (fail the job naming the task, or tolerate k failures)."""

from __future__ import annotations

import asyncio
import datetime as dt

import psycopg

from coremachine.services.state.store_models import Claim
from coremachine.shared.domain.retry import RetryPolicy
from tests.integration.state_fixtures import (
    claim_stage,
    event_types,
    fail,
    make_job,
    make_stage,
    ok,
    outbox_ids,
    stage_row,
)


async def task_row(conn: psycopg.AsyncConnection, task_id: str) -> dict:
    cur = await conn.execute(
        "SELECT status::text, attempt, result_data, error_details FROM coremachine.tasks"
        " WHERE task_id = %s",
        (task_id,),
    )
    row = await cur.fetchone()
    assert row is not None
    return dict(zip(("status", "attempt", "result", "error"), row, strict=True))


async def test_concurrent_claims_of_one_delivery_grant_exactly_one_lease(store):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 1)
    [task], _ = await store.list_tasks(job_id, 1, None, 10, "")
    outcomes = await asyncio.gather(
        *(store.claim_tasks(f"w{i}", 60, [Claim(task.task_id, 1)]) for i in range(20))
    )
    granted = [o for [o] in outcomes if o.task is not None]
    assert len(granted) == 1
    assert {o.reason for [o] in outcomes if o.task is None} == {"task_processing"}


async def test_a_stale_attempt_cannot_overwrite_the_winner(store, pg_conn):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 1)
    [(task_id, stale_token)] = (await claim_stage(store, job_id, 1)).values()
    # The first worker loses its lease (what the janitor does on expiry).
    await store.complete_tasks([fail(task_id, stale_token, "lease expired")])
    assert (await task_row(pg_conn, task_id))["attempt"] == 2
    # The old delivery (attempt 1) can no longer claim the task ...
    [refused] = await store.claim_tasks("w-old", 60, [Claim(task_id, 1)])
    assert refused.task is None and refused.reason == "stale_attempt"
    # ... attempt 2 wins, and the stale worker's late success changes nothing.
    [winner] = await store.claim_tasks("w-new", 60, [Claim(task_id, 2)])
    assert winner.task is not None
    await store.complete_tasks([ok(task_id, str(winner.task.lease_token), {"by": "winner"})])
    [late], _ = await store.complete_tasks([ok(task_id, stale_token, {"by": "stale"})])
    assert not late.accepted
    row = await task_row(pg_conn, task_id)
    assert row["result"] == {"by": "winner"} and row["status"] == "completed"
    assert (await stage_row(pg_conn, job_id, 1))["completed"] == 1


async def test_retryable_failure_schedules_the_next_attempt_with_backoff(store, pg_conn):
    job_id = await make_job(store)
    retry = RetryPolicy(max_attempts=3, backoff_base_ms=2000, backoff_max_ms=10_000)
    await make_stage(store, job_id, 1, 1, retry=retry)
    [(task_id, token)] = (await claim_stage(store, job_id, 1)).values()
    before = dt.datetime.now(dt.UTC)
    [result], _ = await store.complete_tasks([fail(task_id, token, "flaky", retryable=True)])
    assert result.task_status == "retrying"
    row = await task_row(pg_conn, task_id)
    assert (row["status"], row["attempt"]) == ("queued", 2)
    cur = await pg_conn.execute(
        "SELECT scheduled_at FROM coremachine.outbox WHERE message_id = %s", (f"{task_id}:2",)
    )
    [(scheduled_at,)] = await cur.fetchall()
    delay = (scheduled_at - before).total_seconds()
    assert 0.9 <= delay <= 2.5  # jittered within [base/2, base] after the first failure
    assert "task_retrying" in await event_types(pg_conn, job_id)


async def test_exhausted_retries_fail_the_job_with_an_error_naming_the_task(store, pg_conn):
    job_id = await make_job(store)
    retry = RetryPolicy(max_attempts=2, backoff_base_ms=1, backoff_max_ms=1)
    await make_stage(store, job_id, 1, 3, retry=retry)
    claimed = await claim_stage(store, job_id, 1)
    task_id, token = claimed[0]
    await store.complete_tasks([fail(task_id, token, "disk full")])
    [again] = await store.claim_tasks("w", 60, [Claim(task_id, 2)])
    await store.complete_tasks([fail(task_id, str(again.task.lease_token), "disk full again")])
    view = await store.get_job(job_id)
    assert view.job.status == "failed"
    assert task_id in view.job.error_details and "disk full again" in view.job.error_details
    assert "after 2 attempt(s)" in view.job.error_details
    # The job's other tasks were cancelled; their late outcomes are rejected.
    assert (await task_row(pg_conn, claimed[1][0]))["status"] == "cancelled"
    [late], _ = await store.complete_tasks([ok(*claimed[1])])
    assert not late.accepted


async def test_a_permanent_error_fails_without_retrying(store, pg_conn):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 2)
    task_id, token = (await claim_stage(store, job_id, 1))[0]
    [result], _ = await store.complete_tasks([fail(task_id, token, "bad input", retryable=False)])
    assert result.task_status == "failed"
    assert (await task_row(pg_conn, task_id))["attempt"] == 1
    assert (await store.get_job(job_id)).job.status == "failed"


async def test_a_stage_tolerating_failures_completes_with_errors(store, pg_conn):
    job_id = await make_job(store, total_stages=1)
    await make_stage(store, job_id, 1, 4, max_failed=1)
    claimed = await claim_stage(store, job_id, 1)
    await store.complete_tasks(
        [fail(*claimed[0], retryable=False)] + [ok(*claimed[i]) for i in (1, 2, 3)]
    )
    row = await stage_row(pg_conn, job_id, 1)
    assert (row["status"], row["failed"], row["completed"]) == ("completed_with_errors", 1, 3)
    assert f"{job_id}:finalize" in await outbox_ids(pg_conn)
    view, _ = await store.complete_job(job_id, {"ok": 3})
    assert view.job.status == "completed_with_errors"


async def test_one_failure_more_than_tolerated_fails_the_job(store):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 4, max_failed=1)
    claimed = await claim_stage(store, job_id, 1)
    await store.complete_tasks([fail(*claimed[0], retryable=False)])
    assert (await store.get_job(job_id)).job.status == "processing"
    await store.complete_tasks([fail(*claimed[1], retryable=False)])
    assert (await store.get_job(job_id)).job.status == "failed"
