"""Guarantee 1: exactly one advancement per stage, at O(1) per completion."""

from __future__ import annotations

import asyncio
import random

from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.outbox import Outbox
from coremachine.services.state.store import StateStore
from coremachine.shared.messages import job_message_adapter
from tests.integration.state_fixtures import (
    claim_stage,
    event_types,
    fail,
    make_job,
    make_stage,
    new_job_id,
    ok,
    outbox_ids,
    stage_row,
)


async def complete_concurrently(db_url: str, job_id: str, n: int, duplicates: int) -> list:
    """Completes a claimed stage of n tasks from 8 pools at once, in batches of
    5, with `duplicates` outcomes delivered twice; returns each batch's result."""
    pools = [
        AsyncConnectionPool(db_url, min_size=1, max_size=4, open=False, kwargs={"autocommit": True})
        for _ in range(8)
    ]
    for p in pools:
        await p.open(wait=True)
    try:
        stores = [StateStore(p, Outbox("jobs", "tasks")) for p in pools]
        claimed = await claim_stage(stores[0], job_id, 1)
        assert len(claimed) == n
        outcomes = [ok(t, tok, {"i": i}) for i, (t, tok) in claimed.items()]
        work = outcomes + random.Random(7).sample(outcomes, duplicates)
        random.Random(11).shuffle(work)
        batches = [work[i : i + 5] for i in range(0, len(work), 5)]
        return await asyncio.gather(
            *(stores[i % len(stores)].complete_tasks(b) for i, b in enumerate(batches))
        )
    finally:
        for p in pools:
            await p.close()


async def test_500_concurrent_completions_some_twice_advance_the_stage_exactly_once(
    db_url, store, pg_conn
):
    # Many stores, each with its own pool: completions come from many connections.
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 500)
    results = await complete_concurrently(db_url, job_id, 500, duplicates=150)

    accepted = [r for per_batch, _ in results for r in per_batch if r.accepted]
    assert len(accepted) == 500  # every duplicate was rejected
    advanced = [stage for _, stages in results for stage in stages]
    assert advanced == [(job_id, 1)]
    assert (await outbox_ids(pg_conn)).count(f"{job_id}:stage:2") == 1
    assert (await event_types(pg_conn, job_id)).count("stage_completed") == 1
    row = await stage_row(pg_conn, job_id, 1)
    assert row == {
        "status": "completed",
        "task_count": 500,
        "remaining": 0,
        "completed": 500,
        "failed": 0,
        "cancelled": 0,
    }


async def test_concurrent_last_completions_complete_a_summary_job_exactly_once(
    db_url, store, pg_conn
):
    # A job without aggregator completes inside the barrier: the same race
    # must give exactly one completion, with every task counted once.
    job_id = new_job_id()
    await store.create_job(job_id, "noop", {}, 1, {}, default_result=True)
    await make_stage(store, job_id, 1, 300)
    results = await complete_concurrently(db_url, job_id, 300, duplicates=100)

    assert sum(r.accepted for per_batch, _ in results for r in per_batch) == 300
    types = await event_types(pg_conn, job_id)
    assert types.count("stage_completed") == 1 and types.count("job_completed") == 1
    assert types[-1] == "job_completed"
    job = (await store.get_job(job_id)).job
    assert job.status == "completed"
    assert job.result_data["total_tasks"] == 300
    assert job.result_data["stages"]["1"]["completed"] == 300
    assert f"{job_id}:finalize" not in await outbox_ids(pg_conn)


async def test_a_stage_of_zero_tasks_completes_at_once(store, pg_conn):
    job_id = await make_job(store)
    created, completed = await store.create_stage_tasks(job_id, 1, 0, [], (await _policy()))
    assert (created, completed) == (0, True)
    assert f"{job_id}:stage:2" in await outbox_ids(pg_conn)


async def test_the_last_stage_asks_for_finalization(store, pg_conn):
    job_id = await make_job(store, total_stages=1)
    await make_stage(store, job_id, 1, 3)
    claimed = await claim_stage(store, job_id, 1)
    _, stages = await store.complete_tasks([ok(t, tok) for t, tok in claimed.values()])
    assert stages == [(job_id, 1)]
    assert f"{job_id}:finalize" in await outbox_ids(pg_conn)
    view, changed = await store.complete_job(job_id, {"done": True})
    assert changed and view.job.status == "completed" and view.job.result_data == {"done": True}
    _, again = await store.complete_job(job_id, {"done": "twice"})
    assert not again  # a replayed finalize changes nothing


async def test_replayed_stage_ready_creates_no_duplicate_tasks(store, pg_conn):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 10)
    await make_stage(store, job_id, 1, 10)  # the orchestrator got the message twice
    tasks, _ = await store.list_tasks(job_id, 1, None, 100, "")
    assert len(tasks) == 10
    task_messages = [m for m in await outbox_ids(pg_conn) if "-s1-" in m]
    assert len(task_messages) == 10


async def _policy():
    from coremachine.services.state.store_models import StagePolicy
    from coremachine.shared.domain.retry import RetryPolicy

    return StagePolicy(RetryPolicy())


async def _default_result_job(store, total_stages: int) -> str:
    job_id = new_job_id()
    await store.create_job(job_id, "noop", {}, total_stages, {}, default_result=True)
    return job_id


async def test_a_job_without_aggregator_completes_with_its_last_stage(store, pg_conn):
    job_id = await _default_result_job(store, total_stages=2)
    await make_stage(store, job_id, 1, 2)
    claimed = await claim_stage(store, job_id, 1)
    await store.complete_tasks([ok(t, tok) for t, tok in claimed.values()])
    await make_stage(store, job_id, 2, 1)
    claimed = await claim_stage(store, job_id, 2)
    _, stages = await store.complete_tasks([ok(t, tok) for t, tok in claimed.values()])

    assert stages == [(job_id, 2)]
    # Completed in that transaction: no "finalize" round trip through the orchestrator.
    assert f"{job_id}:finalize" not in await outbox_ids(pg_conn)
    job = (await store.get_job(job_id)).job
    assert job.status == "completed"
    assert job.result_data == {
        "job_type": "noop",
        "total_tasks": 3,
        "stages": {
            "1": {
                "task_count": 2,
                "completed": 2,
                "failed": 0,
                "cancelled": 0,
                "status": "completed",
            },
            "2": {
                "task_count": 1,
                "completed": 1,
                "failed": 0,
                "cancelled": 0,
                "status": "completed",
            },
        },
        "failed_tasks": [],
    }
    assert (await event_types(pg_conn, job_id))[-2:] == ["stage_completed", "job_completed"]


async def test_a_default_result_lists_the_tolerated_failures(store, pg_conn):
    job_id = await _default_result_job(store, total_stages=1)
    await make_stage(store, job_id, 1, 3, max_failed=1)
    claimed = await claim_stage(store, job_id, 1)
    await store.complete_tasks(
        [fail(*claimed[1], "bad row", retryable=False), ok(*claimed[0]), ok(*claimed[2])]
    )
    job = (await store.get_job(job_id)).job
    assert job.status == "completed_with_errors"
    assert job.result_data["failed_tasks"] == [
        {"task_id": claimed[1][0], "stage": 1, "task_index": 1, "error": "bad row"}
    ]
    _, again = await store.complete_job(job_id, {"late": "finalize"})
    assert not again  # already completed: a stray finalize changes nothing


async def _outbox_message(conn, message_id: str):
    cur = await conn.execute(
        "SELECT body FROM coremachine.outbox WHERE message_id = %s", (message_id,)
    )
    row = await cur.fetchone()
    assert row is not None, message_id
    return job_message_adapter.validate_json(bytes(row[0]))


async def test_a_small_finished_stage_sends_its_results_with_the_message(store, pg_conn):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 3, max_failed=1)
    claimed = await claim_stage(store, job_id, 1)
    outcomes = [ok(*claimed[0], {"v": 0}), fail(*claimed[1], "nope", retryable=False)]
    await store.complete_tasks([*outcomes, ok(*claimed[2], {"v": 2})])
    message = await _outbox_message(pg_conn, f"{job_id}:stage:2")
    context = message.context
    assert context is not None
    assert context.parameters == {"seed": job_id[:8]} and context.total_stages == 2
    assert context.stage_summaries["1"]["failed"] == 1
    assert [(r.task_index, r.status, r.error) for r in context.results] == [
        (0, "completed", ""),
        (1, "failed", "nope"),
        (2, "completed", ""),
    ]
    assert [r.result_json for r in context.results][::2] == ['{"v": 0}', '{"v": 2}']


async def test_a_large_finished_stage_leaves_its_results_to_be_read(store, pg_conn, monkeypatch):
    monkeypatch.setattr("coremachine.services.state.barrier.CONTEXT_MAX_TASKS", 2)
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 3)
    claimed = await claim_stage(store, job_id, 1)
    await store.complete_tasks([ok(t, tok) for t, tok in claimed.values()])
    message = await _outbox_message(pg_conn, f"{job_id}:stage:2")
    assert message.context is None
