"""Flow control inside the state service's transactions (docs/flow-control.md).

- Concurrency keys and rate limits are decided by the claim (the SQL function
  coremachine.claim_tasks, migration 0010). A task refused for a limit is
  *held* in its row, not left in a queue: its message is completed, so it
  never burns deliveries towards the dead-letter queue, and no worker keeps
  it in memory. A task held for a rate limit gets its message again,
  scheduled for the start time the bucket gave it; one held for a key gets it
  when a slot frees (`release_keys`, called by every transaction that takes a
  task with keys out of 'processing'). The janitor's sweep (`sweep_holds`)
  catches up anything a crash left in between.
- A running-job limit per job type and delayed starts (`not_before`) hold the
  job itself before its first stage: `start_or_hold` decides at creation and
  when the delayed start comes, `release_job_slots` starts the next waiting
  job of the type when one ends.

Lock order, as everywhere (locks.py): jobs rows, then stages, then tasks,
then job type slots, concurrency keys and rate limits (each in key order);
rows of other jobs are only ever taken with SKIP LOCKED.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import psycopg
from psycopg.rows import class_row

from coremachine.services.state.events import NewEvent, append_events
from coremachine.services.state.outbox import Outbox
from coremachine.services.state.rows import JobRow
from coremachine.services.state.sql import Q
from coremachine.services.state.store_models import RateLimitSpec

START_TIME = "start_time"
JOB_SLOT = "job_slot"


def held_reason(held_for: str, count: int = 1) -> str:
    """What a number of a job's tasks wait for, in words."""
    kind, _, name = held_for.partition(":")
    tasks = f"{count} task{'s' if count != 1 else ''}"
    if kind == "key":
        return f"{tasks} wait for concurrency key {name!r} (at its limit)"
    if kind == "rate":
        return f"{tasks} wait for rate limit {name!r}"
    return f"{tasks} wait for {held_for}"


def start_time_reason(not_before: dt.datetime) -> str:
    return f"starts at {not_before.astimezone(dt.UTC).isoformat()} (not_before)"


def job_slot_reason(job_type: str, max_running: int) -> str:
    return (
        f"waits for a running slot: at most {max_running} job(s) of type {job_type!r} run at once"
    )


async def held_tasks_reason(conn: psycopg.AsyncConnection, job_id: str) -> str:
    """Why some of a job's tasks are not running although queued, if they are held."""
    cur = await conn.execute(Q.held_tasks_of_job, {"job_id": job_id})
    return "; ".join(held_reason(held_for, n) for held_for, n in await cur.fetchall())


async def upsert_rate_limit(conn: psycopg.AsyncConnection, spec: RateLimitSpec) -> None:
    await conn.execute(
        Q.upsert_rate_limit,
        {"name": spec.name, "per_second": spec.per_second, "burst": spec.burst},
    )


# -- concurrency keys ------------------------------------------------------------


async def keys_of_stages(
    conn: psycopg.AsyncConnection, stages: Iterable[tuple[str, int]]
) -> list[str]:
    pairs = sorted(set(stages))
    if not pairs:
        return []
    cur = await conn.execute(
        Q.keys_of_stages, {"job_ids": [j for j, _ in pairs], "stages": [s for _, s in pairs]}
    )
    return [row[0] for row in await cur.fetchall()]


async def keys_of_job(conn: psycopg.AsyncConnection, job_id: str) -> list[str]:
    cur = await conn.execute(Q.keys_of_job, {"job_id": job_id})
    return [row[0] for row in await cur.fetchall()]


async def release_keys(conn: psycopg.AsyncConnection, outbox: Outbox, keys: Sequence[str]) -> int:
    """Sends on the held tasks these keys have room for now; returns how many."""
    if not keys:
        return 0
    cur = await conn.execute(Q.release_held, {"keys": sorted(set(keys))})
    released = await cur.fetchall()
    await outbox.write(
        conn,
        [
            outbox.task(
                task_id, job_id, task_type, attempt, queue=queue or None, priority=priority,
                again=True,
            )
            for task_id, job_id, task_type, attempt, queue, priority in released
        ],
    )  # fmt: skip
    return len(released)


async def sweep_holds(conn: psycopg.AsyncConnection, outbox: Outbox, stale_seconds: float) -> int:
    """The janitor's safety net: releases for every key with waiting tasks (a
    release a crash or a skipped row left undone), and sends again the held
    tasks whose message has not come back for stale_seconds."""
    cur = await conn.execute(Q.keys_with_waiting_tasks)
    released = await release_keys(conn, outbox, [row[0] for row in await cur.fetchall()])
    cur = await conn.execute(
        Q.resend_overdue_releases, {"stale_seconds": stale_seconds, "limit": 500}
    )
    overdue = await cur.fetchall()
    await outbox.write(
        conn,
        [
            outbox.task(
                task_id, job_id, task_type, attempt, queue=queue or None, priority=priority,
                again=True,
            )
            for task_id, job_id, task_type, attempt, queue, priority in overdue
        ],
    )  # fmt: skip
    return released + len(overdue)


# -- job starts ------------------------------------------------------------------


async def start_or_hold(
    conn: psycopg.AsyncConnection, job: JobRow, events: list[NewEvent]
) -> JobRow:
    """Decides whether a new (or delayed, now due) job starts: held for its
    start time, or for a slot of its type, else started. The job row is locked
    by the caller; the returned row says which (`held`)."""
    now = dt.datetime.now(dt.UTC)
    if job.not_before is not None and job.not_before > now:
        return await _hold(conn, job, START_TIME, start_time_reason(job.not_before), events)
    if job.max_running is not None:
        await conn.execute(Q.ensure_job_type_slot, {"job_type": job.job_type})
        await conn.execute(Q.lock_job_type_slot, {"job_type": job.job_type})
        cur = await conn.execute(
            Q.running_jobs_of_type, {"job_type": job.job_type, "except_job_id": job.job_id}
        )
        row = await cur.fetchone()
        if row is not None and row[0] >= job.max_running:
            reason = job_slot_reason(job.job_type, job.max_running)
            return await _hold(conn, job, JOB_SLOT, reason, events)
    if job.held is not None:
        job_cur = conn.cursor(row_factory=class_row(JobRow))
        await job_cur.execute(Q.start_held_jobs, {"job_ids": [job.job_id]})
        started = await job_cur.fetchone()
        assert started is not None
        events.append(NewEvent(job.job_id, "job_resumed", data={"was": job.held}))
        return started
    return job


async def _hold(
    conn: psycopg.AsyncConnection, job: JobRow, held: str, reason: str, events: list[NewEvent]
) -> JobRow:
    cur = conn.cursor(row_factory=class_row(JobRow))
    await cur.execute(Q.hold_job, {"job_id": job.job_id, "held": held, "waiting": reason})
    row = await cur.fetchone()
    assert row is not None
    if job.held != held:
        events.append(NewEvent(job.job_id, "job_waiting", data={"reason": reason}))
    return row


async def release_job_slots(conn: psycopg.AsyncConnection, outbox: Outbox, ended: JobRow) -> int:
    """A job of a limited type ended (its lock is held): starts the oldest
    jobs waiting for a slot of that type, as many as there is room for, each
    with its "stage 1 ready" message. Returns how many started."""
    if ended.max_running is None:
        return 0
    await conn.execute(Q.ensure_job_type_slot, {"job_type": ended.job_type})
    await conn.execute(Q.lock_job_type_slot, {"job_type": ended.job_type})
    cur = await conn.execute(
        Q.running_jobs_of_type, {"job_type": ended.job_type, "except_job_id": ended.job_id}
    )
    row = await cur.fetchone()
    room = ended.max_running - (row[0] if row else 0)
    if room <= 0:
        return 0
    cur = await conn.execute(
        Q.next_jobs_waiting_for_slot, {"job_type": ended.job_type, "limit": room}
    )
    waiting = [r[0] for r in await cur.fetchall()]
    if not waiting:
        return 0
    job_cur = conn.cursor(row_factory=class_row(JobRow))
    await job_cur.execute(Q.start_held_jobs, {"job_ids": waiting})
    started = await job_cur.fetchall()
    await outbox.write(
        conn,
        [
            outbox.stage_ready(
                j.job_id, j.job_type, 1, definition=j.definition, priority=j.priority, again=True
            )
            for j in started
        ],
    )
    await append_events(
        conn, [NewEvent(j.job_id, "job_resumed", data={"was": JOB_SLOT}) for j in started]
    )
    return len(started)


async def after_job_end(conn: psycopg.AsyncConnection, outbox: Outbox, job: JobRow) -> int:
    """A job just ended in this transaction (its lock held; its running tasks
    cancelled): the slots its tasks held and the running slot of its type go
    to whoever waits. Costs nothing for a job without flow limits."""
    started = 0
    if job.flow_limited:
        started += await release_keys(conn, outbox, await keys_of_job(conn, job.job_id))
    return started + await release_job_slots(conn, outbox, job)
