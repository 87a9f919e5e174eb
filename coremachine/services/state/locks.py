"""Reading and locking job and stage rows inside a transaction.

Lock order, everywhere: the jobs row first (several in key order), then its
job_stages rows, then tasks rows; every writer of a stage row holds its job's
lock, so concurrent batches never deadlock.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import class_row

from coremachine.services.state.rows import JobRow, StageRow
from coremachine.services.state.sql import Q
from coremachine.shared.errors import NotFound
from coremachine.shared.pg_json import values


async def fetch_job(conn: psycopg.AsyncConnection, job_id: str) -> JobRow:
    cur = conn.cursor(row_factory=class_row(JobRow))
    await cur.execute(Q.get_job, {"job_id": job_id})
    job = await cur.fetchone()
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


async def lock_job(conn: psycopg.AsyncConnection, job_id: str) -> JobRow:
    cur = conn.cursor(row_factory=class_row(JobRow))
    await cur.execute(Q.lock_job, {"job_id": job_id})
    job = await cur.fetchone()
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


async def lock_jobs_of(conn: psycopg.AsyncConnection, task_ids: list[str]) -> dict[str, JobRow]:
    """Locks the jobs of these tasks (first, in key order); returns them by id."""
    cur = conn.cursor(row_factory=class_row(JobRow))
    await cur.execute(Q.lock_jobs_of_tasks, {"task_ids": values(task_ids)})
    return {job.job_id: job for job in await cur.fetchall()}


async def locked_stage(conn: psycopg.AsyncConnection, job_id: str, stage: int) -> StageRow:
    cur = conn.cursor(row_factory=class_row(StageRow))
    await cur.execute(Q.lock_stages, {"job_ids": [job_id], "stages": [stage]})
    row = await cur.fetchone()
    if row is None:
        raise NotFound(f"stage {stage} of job {job_id} has no tasks yet")
    return row
