"""Helpers to drive the state store directly on a real PostgreSQL database."""

from __future__ import annotations

import json
import secrets

import psycopg

from coremachine.services.state.store import StateStore
from coremachine.services.state.store_models import Claim, NewTaskSpec, Outcome, StagePolicy
from coremachine.shared.domain.retry import RetryPolicy

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_base_ms=100, backoff_max_ms=1000)


def new_job_id() -> str:
    return secrets.token_hex(32)


async def make_job(store: StateStore, total_stages: int = 2, job_type: str = "hello_world") -> str:
    job_id = new_job_id()
    await store.create_job(job_id, job_type, {"seed": job_id[:8]}, total_stages, {})
    return job_id


async def make_stage(
    store: StateStore,
    job_id: str,
    stage: int,
    n: int,
    retry: RetryPolicy = FAST_RETRY,
    max_failed: int = 0,
) -> None:
    specs = [NewTaskSpec(i, "noop", json.dumps({"i": i})) for i in range(n)]
    await store.create_stage_tasks(job_id, stage, n, specs, StagePolicy(retry, max_failed))


async def claim_stage(
    store: StateStore, job_id: str, stage: int, attempt: int = 1
) -> dict[int, tuple[str, str]]:
    """Claims every task of a stage; returns {task_index: (task_id, lease_token)}."""
    tasks, _ = await store.list_tasks(job_id, stage, None, 1000, "")
    outcomes = await store.claim_tasks(
        "test-worker", 60, [Claim(t.task_id, attempt) for t in tasks]
    )
    claimed = {}
    for task, outcome in zip(tasks, outcomes, strict=True):
        assert outcome.task is not None, outcome.reason
        claimed[task.task_index] = (task.task_id, str(outcome.task.lease_token))
    return claimed


def ok(task_id: str, token: str, result: object = None) -> Outcome:
    return Outcome(task_id, token, True, json.dumps(result if result is not None else {"ok": True}))


def fail(task_id: str, token: str, error: str = "boom", retryable: bool = True) -> Outcome:
    return Outcome(task_id, token, False, None, error, retryable)


async def outbox_ids(conn: psycopg.AsyncConnection) -> list[str]:
    cur = await conn.execute("SELECT message_id FROM coremachine.outbox ORDER BY id")
    return [row[0] for row in await cur.fetchall()]


async def stage_row(conn: psycopg.AsyncConnection, job_id: str, stage: int) -> dict:
    cur = await conn.execute(
        "SELECT status::text, task_count, remaining, completed, failed, cancelled"
        " FROM coremachine.job_stages WHERE job_id = %s AND stage = %s",
        (job_id, stage),
    )
    row = await cur.fetchone()
    assert row is not None
    return dict(
        zip(
            ("status", "task_count", "remaining", "completed", "failed", "cancelled"),
            row,
            strict=True,
        )
    )


async def event_types(conn: psycopg.AsyncConnection, job_id: str) -> list[str]:
    cur = await conn.execute(
        "SELECT event_type FROM coremachine.job_events WHERE job_id = %s ORDER BY seq", (job_id,)
    )
    return [row[0] for row in await cur.fetchall()]
