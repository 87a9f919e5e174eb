"""Flow-control measurements: `python -m bench --priority` and `--limits`.

- priority: a noop job of n tasks per stage (100,000 by default) fills the
  queue; once its first stage is queued, a priority 9 job of one task and a
  normal one are submitted together: how long each takes, submit to
  completed (the big job is cancelled afterwards);
- limits: what a limit check costs per claim, measured on the state store
  itself (no network, no workers): batches of 128 claims (as a worker sends
  them) of the same tasks with no limit, a concurrency key, a rate limit,
  and both, the limits set so that they never refuse (only the check is
  measured); each batch is completed before the next, so the running count
  stays at one batch, as with real workers. Reported per claim call and per
  task, and as the difference to no limit.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.outbox import Outbox
from coremachine.services.state.schema import migrate_all
from coremachine.services.state.store import StateStore
from coremachine.services.state.store_models import (
    Claim,
    JobStart,
    NewTaskSpec,
    Outcome,
    RateLimitSpec,
    StagePolicy,
)
from coremachine.shared.domain.retry import RetryPolicy
from coremachine_sdk import Client, JobStatus

BATCH = 128


def priority_behind_backlog(client: Client, n: int) -> dict[str, Any]:
    """Latency of a priority 9 one-task job (and a normal one) behind n queued tasks."""
    big = client.submit("noop", n=n, run=uuid.uuid4().hex)
    deadline = time.monotonic() + 600
    # Wait until the backlog's first stage is queued (and running).
    while True:
        job = client.get(big.job_id)
        first = job.stages[0] if job.stages else None
        if first is not None and first.task_count == n and first.completed >= min(1000, n // 10):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the backlog's first stage did not start")
        time.sleep(0.1)
    backlog_left = first.remaining
    started = time.perf_counter()
    urgent = client.submit_job("noop", {"n": 1, "run": uuid.uuid4().hex}, priority=9)
    normal = client.submit_job("noop", {"n": 1, "run": uuid.uuid4().hex})
    urgent_done = client.wait(urgent.job_id, timeout=600)
    urgent_s = time.perf_counter() - started
    left_then = client.get(big.job_id).stages[0].remaining
    normal_done = client.wait(normal.job_id, timeout=1200)
    normal_s = time.perf_counter() - started
    client.cancel(big.job_id)
    if urgent_done.status != JobStatus.COMPLETED or normal_done.status != JobStatus.COMPLETED:
        raise RuntimeError(f"priority jobs ended {urgent_done.status}, {normal_done.status}")
    return {
        "backlog_tasks": n,
        "backlog_queued_at_submit": backlog_left,
        "backlog_queued_when_priority_job_done": left_then,
        "priority_9_job_s": round(urgent_s, 3),
        "priority_5_job_s": round(normal_s, 3),
    }


async def claim_cost(database_url: str, tasks: int, rounds: int = 3) -> dict[str, Any]:
    """Milliseconds per claim of 128 tasks with and without limits (see the module doc)."""
    await migrate_all(database_url, database_url)
    pool = AsyncConnectionPool(
        database_url, min_size=2, max_size=4, open=False, kwargs={"autocommit": True}
    )
    await pool.open(wait=True)
    store = StateStore(pool, Outbox("jobs", "tasks"))
    never = 10**9
    variants = {
        "none": StagePolicy(RetryPolicy()),
        "concurrency_key": StagePolicy(RetryPolicy(), concurrency=(("tenant:bench", never),)),
        "rate_limit": StagePolicy(
            RetryPolicy(), rate_limit=RateLimitSpec("bench", float(never), never)
        ),
        "key_and_rate": StagePolicy(
            RetryPolicy(),
            concurrency=(("tenant:bench", never),),
            rate_limit=RateLimitSpec("bench-2", float(never), never),
        ),
    }
    per_claim: dict[str, list[float]] = {name: [] for name in variants}
    try:
        # Rounds interleave the variants, so drift on a shared machine hits all alike.
        for _ in range(rounds):
            for name, policy in variants.items():
                per_claim[name] += await _claim_all(store, pool, tasks, policy)
    finally:
        await pool.close()
    base = statistics.mean(per_claim["none"])
    results: dict[str, Any] = {"tasks_per_variant": tasks, "batch": BATCH, "rounds": rounds}
    for name, samples in per_claim.items():
        mean = statistics.mean(samples)
        results[name] = {
            "ms_per_claim": round(mean, 3),
            "p50_ms": round(statistics.median(samples), 3),
            "us_per_task": round(mean * 1000 / BATCH, 1),
            "extra_ms_per_claim": round(mean - base, 3),
        }
    return results


async def _claim_all(
    store: StateStore, pool: AsyncConnectionPool, n: int, policy: StagePolicy
) -> list[float]:
    job_id = uuid.uuid4().hex * 2
    limited = bool(policy.concurrency or policy.rate_limit)
    await store.create_job(
        job_id, "bench", {}, 1, {}, default_result=True, start=JobStart(flow_limited=limited)
    )
    specs = [NewTaskSpec(i, "noop", json.dumps({"i": i})) for i in range(n)]
    for start in range(0, n, 2000):
        await store.create_stage_tasks(job_id, 1, n, specs[start : start + 2000], policy)
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT task_id FROM coremachine.tasks WHERE job_id = %s ORDER BY task_index",
            (job_id,),
        )
        ids = [row[0] for row in await cur.fetchall()]
    samples = []
    for start in range(0, n, BATCH):
        batch = [Claim(t, 1) for t in ids[start : start + BATCH]]
        began = time.perf_counter()
        outcomes = await store.claim_tasks("bench-worker", 60, batch)
        samples.append((time.perf_counter() - began) * 1000)
        granted = [o.task for o in outcomes if o.task is not None]
        if len(granted) != len(batch):
            raise RuntimeError(f"a never-binding limit refused claims: {outcomes[:3]}")
        await store.complete_tasks([Outcome(t.task_id, t.lease_token, True, "{}") for t in granted])
    # The queue rows the stage wrote are not needed: keep the database small.
    async with pool.connection() as conn:
        await conn.execute("DELETE FROM coremachine.outbox")
    return samples


def claim_cost_in(admin_url: str, tasks: int, rounds: int) -> dict[str, Any]:
    """claim_cost on a scratch database of the server at admin_url."""
    from tests.databases import create_database, drop_database

    url = create_database(admin_url, prefix="cm_bench_limits")
    try:
        return asyncio.run(claim_cost(url, tasks, rounds))
    finally:
        drop_database(admin_url, url)


def check_server(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1")
