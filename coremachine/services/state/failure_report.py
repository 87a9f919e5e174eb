"""A job's failed tasks grouped by error message: what a failed job's page shows first.

Bounded whatever the job's size: at most SCAN_LIMIT failed tasks are read (through
the partial index on failed tasks), grouped in PostgreSQL, and the largest groups
come back with a few sample tasks each.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.locks import fetch_job
from coremachine.services.state.sql import Q

SCAN_LIMIT = 10_000
SAMPLES = 5
MAX_GROUPS = 100


@dataclass(frozen=True, slots=True)
class FailedTaskSample:
    task_id: str
    stage: int
    task_index: int
    attempt: int


@dataclass(frozen=True, slots=True)
class FailureGroup:
    error: str
    tasks: int
    stages: list[int]
    min_attempt: int
    max_attempt: int
    samples: list[FailedTaskSample]


@dataclass(frozen=True, slots=True)
class FailureReport:
    groups: list[FailureGroup]
    # Failed tasks read; SCAN_LIMIT means there may be more.
    scanned: int

    @property
    def truncated(self) -> bool:
        return self.scanned >= SCAN_LIMIT


async def failures_by_error(pool: AsyncConnectionPool, job_id: str, limit: int) -> FailureReport:
    """Raises NotFound for an unknown job."""
    async with pool.connection() as conn:
        await fetch_job(conn, job_id)
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            Q.task_failures_by_error,
            {
                "job_id": job_id,
                "scan_limit": SCAN_LIMIT,
                "samples": SAMPLES,
                "group_limit": max(1, min(limit or 20, MAX_GROUPS)),
            },
        )
        rows = await cur.fetchall()
    groups = [
        FailureGroup(
            error=r["error"],
            tasks=int(r["tasks"]),
            stages=list(r["stages"]),
            min_attempt=int(r["min_attempt"]),
            max_attempt=int(r["max_attempt"]),
            samples=[
                FailedTaskSample(*sample)
                for sample in zip(
                    r["sample_task_ids"],
                    r["sample_stages"],
                    r["sample_indexes"],
                    r["sample_attempts"],
                    strict=True,
                )
            ],
        )
        for r in rows
    ]
    return FailureReport(groups, int(rows[0]["scanned"]) if rows else 0)
