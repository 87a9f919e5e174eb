"""Concurrency keys, rate limits, running-job limits and delayed starts, on a
real PostgreSQL with many concurrent claimers (what several workers and state
replicas do): the limits hold at every instant, held tasks wait in their rows
(not in a queue, never dead-lettered), and every task runs in the end."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random

import psycopg

from coremachine.services.state.store import StateStore
from coremachine.services.state.store_models import (
    Claim,
    JobStart,
    NewTaskSpec,
    RateLimitSpec,
    StagePolicy,
)
from coremachine.shared.messages import TaskMessage
from tests.integration.state_fixtures import FAST_RETRY, new_job_id, ok


async def limited_job(
    store: StateStore,
    n: int,
    *,
    keys: tuple[tuple[str, int], ...] = (),
    rate: RateLimitSpec | None = None,
    job_type: str = "flow",
) -> str:
    job_id = new_job_id()
    await store.create_job(
        job_id,
        job_type,
        {"seed": job_id[:8]},
        1,
        {},
        default_result=True,
        start=JobStart(flow_limited=True),
    )
    specs = [NewTaskSpec(i, "noop", json.dumps({"i": i})) for i in range(n)]
    await store.create_stage_tasks(
        job_id, 1, n, specs, StagePolicy(FAST_RETRY, concurrency=keys, rate_limit=rate)
    )
    return job_id


async def take_messages(conn: psycopg.AsyncConnection, limit: int) -> list[TaskMessage]:
    """What a worker would receive: due task messages, taken off the outbox."""
    cur = await conn.execute(
        "DELETE FROM coremachine.outbox WHERE id IN (SELECT id FROM coremachine.outbox"
        " WHERE queue = 'tasks' AND (scheduled_at IS NULL OR scheduled_at <= now())"
        " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING body",
        (limit,),
    )
    return [TaskMessage.model_validate_json(bytes(row[0])) for row in await cur.fetchall()]


async def running_with_key(conn: psycopg.AsyncConnection, key: str) -> int:
    cur = await conn.execute(
        "SELECT count(*) FROM coremachine.tasks WHERE status = 'processing'"
        " AND slot_keys @> ARRAY[%s]",
        (key,),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def job_status(conn: psycopg.AsyncConnection, job_id: str) -> str:
    cur = await conn.execute(
        "SELECT status::text FROM coremachine.jobs WHERE job_id = %s", (job_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])


async def run_workers(
    store: StateStore,
    db_url: str,
    job_ids: list[str],
    *,
    workers: int,
    batch: int,
    work_seconds: float,
    deadline: float,
    on_claimed=None,
) -> None:
    """Workers that receive, claim, 'run' and report until every job ended."""
    done = asyncio.Event()

    async def worker(w: int) -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            while not done.is_set():
                messages = await take_messages(conn, batch)
                if not messages:
                    await asyncio.sleep(0.01)
                    continue
                outcomes = await store.claim_tasks(
                    f"w{w}", 60, [Claim(m.task_id, m.attempt) for m in messages]
                )
                granted = [o.task for o in outcomes if o.task is not None]
                for o in outcomes:
                    # Refused claims are duplicates or holds: never an error.
                    assert o.task is not None or o.reason.startswith(("held:", "task_")), o
                if on_claimed is not None:
                    await on_claimed(conn)
                if granted:
                    await asyncio.sleep(work_seconds * random.uniform(0.5, 1.5))
                    await store.complete_tasks([ok(t.task_id, t.lease_token) for t in granted])

    async def watch() -> None:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            loop = asyncio.get_running_loop()
            end = loop.time() + deadline
            while True:
                statuses = [await job_status(conn, j) for j in job_ids]
                if all(s == "completed" for s in statuses):
                    break
                assert loop.time() < end, f"jobs still {statuses}"
                await asyncio.sleep(0.05)
        done.set()

    await asyncio.gather(watch(), *(worker(w) for w in range(workers)))


async def test_a_key_limit_holds_across_concurrent_claimers_and_every_task_runs(
    store: StateStore, db_url: str, pg_conn
):
    # Two jobs of different types share the key; 8 claimers with big batches.
    a = await limited_job(store, 40, keys=(("tenant:acme", 3),), job_type="ingest")
    b = await limited_job(store, 40, keys=(("tenant:acme", 3),), job_type="export")
    peak = 0

    async def sample(conn: psycopg.AsyncConnection) -> None:
        nonlocal peak
        peak = max(peak, await running_with_key(conn, "tenant:acme"))
        assert peak <= 3

    await run_workers(
        store,
        db_url,
        [a, b],
        workers=8,
        batch=16,
        work_seconds=0.01,
        deadline=60,
        on_claimed=sample,
    )
    assert peak == 3
    cur = await pg_conn.execute(
        "SELECT count(*) FROM coremachine.tasks WHERE held_for IS NOT NULL OR status <> 'completed'"
    )
    assert (await cur.fetchone())[0] == 0


async def test_keys_are_independent_and_a_held_task_says_what_it_waits_for(
    store: StateStore, pg_conn
):
    a = await limited_job(store, 3, keys=(("tenant:a", 1),))
    b = await limited_job(store, 2, keys=(("tenant:b", 2),))
    messages = await take_messages(pg_conn, 100)
    outcomes = await store.claim_tasks("w", 60, [Claim(m.task_id, m.attempt) for m in messages])
    by_job: dict[str, list] = {a: [], b: []}
    for m, o in zip(messages, outcomes, strict=True):
        by_job[m.job_id].append(o)
    assert sum(o.task is not None for o in by_job[a]) == 1
    assert sum(o.task is not None for o in by_job[b]) == 2
    held = [o for o in by_job[a] if o.task is None]
    assert [o.reason for o in held] == [
        "held: 1 task wait for concurrency key 'tenant:a' (at its limit)"
    ] * 2
    view = await store.get_job(a)
    assert "2 tasks wait for concurrency key 'tenant:a'" in view.waiting
    # A held task has no message anywhere until a slot frees; then exactly one
    # (the oldest hold; held together: by id) is sent again, under a new id.
    assert await take_messages(pg_conn, 100) == []
    [running] = [o.task for o in by_job[a] if o.task is not None]
    await store.complete_tasks([ok(running.task_id, running.lease_token)])
    [again] = await take_messages(pg_conn, 100)
    assert again.task_id == min(o.task_id for o in held)


async def test_a_rate_limit_spaces_task_starts_and_never_exceeds_its_bucket(
    store: StateStore, db_url: str, pg_conn
):
    rate, burst, n = 40.0, 5, 60
    job = await limited_job(store, n, rate=RateLimitSpec("downstream", rate, burst))
    await run_workers(store, db_url, [job], workers=4, batch=32, work_seconds=0.0, deadline=60)
    cur = await pg_conn.execute(
        "SELECT started_at FROM coremachine.tasks WHERE job_id = %s ORDER BY started_at", (job,)
    )
    starts = [row[0] for row in await cur.fetchall()]
    assert len(starts) == n
    # n starts with a bucket of `burst` take at least (n - burst) / rate seconds ...
    assert (starts[-1] - starts[0]).total_seconds() >= (n - burst) / rate - 0.01
    # ... and no window of one second holds more than burst + rate starts.
    for i, first in enumerate(starts):
        window = [s for s in starts[i:] if s < first + dt.timedelta(seconds=1)]
        assert len(window) <= burst + rate


async def test_at_most_max_running_jobs_of_a_type_run_and_the_next_starts_when_one_ends(
    store: StateStore, pg_conn
):
    ids = []
    for i in range(4):
        job_id = new_job_id()
        await store.create_job(job_id, "limited", {"i": i}, 1, {}, start=JobStart(max_running=2))
        ids.append(job_id)
    held = [(await store.get_job(j)).job.held for j in ids]
    assert held == [None, None, "job_slot", "job_slot"]
    waiting = (await store.get_job(ids[2])).waiting
    assert "at most 2 job(s) of type 'limited' run at once" in waiting
    await store.cancel_job(ids[0], "test")
    # The oldest waiting job starts: its "stage 1 ready" message is sent.
    assert [(await store.get_job(j)).job.held for j in ids[1:]] == [None, None, "job_slot"]
    cur = await pg_conn.execute(
        "SELECT message_id FROM coremachine.outbox WHERE queue = 'jobs' ORDER BY id"
    )
    sent = [row[0] for row in await cur.fetchall()]
    assert sum(m.startswith(f"{ids[2]}:stage:1") for m in sent) == 1
    assert not any(m.startswith(f"{ids[3]}:stage:1") for m in sent)


async def test_a_delayed_job_waits_for_its_start_time(store: StateStore, pg_conn):
    job_id = new_job_id()
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    view, _ = await store.create_job(job_id, "later", {}, 1, {}, start=JobStart(not_before=at))
    assert view.job.status == "queued" and view.job.held == "start_time"
    assert "starts at" in (await store.get_job(job_id)).waiting
    cur = await pg_conn.execute(
        "SELECT scheduled_at FROM coremachine.outbox WHERE queue = 'jobs' AND message_id = %s",
        (f"{job_id}:stage:1",),
    )
    assert (await cur.fetchone())[0] == at
    spec = [NewTaskSpec(0, "noop", "{}")]
    # Its message came early (clock skew): not started, sent again for its time.
    assert await store.create_stage_tasks(job_id, 1, 1, spec, StagePolicy(FAST_RETRY)) == (0, False)
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    while dt.datetime.now(dt.UTC) < at:
        assert loop.time() < end
        await asyncio.sleep(0.05)
    assert await store.create_stage_tasks(job_id, 1, 1, spec, StagePolicy(FAST_RETRY)) == (1, False)
    job = (await store.get_job(job_id)).job
    assert (job.status, job.held) == ("processing", None)
