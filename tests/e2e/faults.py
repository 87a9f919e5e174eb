"""Helpers for the fault-injection tests: fast recovery settings and checks."""

from __future__ import annotations

import time

import psycopg

# Short leases, locks and sweeps so that recovery after kill -9 takes seconds.
FAST_RECOVERY_ENV = {
    "TASK_LEASE_SECONDS": "3",
    "BROKER_LOCK_SECONDS": "3",
    "JANITOR_INTERVAL_SECONDS": "1",
    "STAGE_STALL_SECONDS": "2",
    "STAGE_CREATE_CHUNK_SIZE": "20",
    "TASK_RETRY_BASE_MS": "50",
    "TASK_RETRY_MAX_MS": "200",
    "WORKER_SHUTDOWN_GRACE_SECONDS": "2",
}


def scalar(database_url: str, sql: str, *args) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql, args).fetchone()
        return int(row[0]) if row and row[0] is not None else 0


def wait_until(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def assert_counted_once(database_url: str, job_id: str, n: int) -> None:
    """Exactly n completed tasks per stage, each counted once, and counters that agree."""
    with psycopg.connect(database_url) as conn:
        per_stage = conn.execute(
            "SELECT stage, count(*) FILTER (WHERE status = 'completed'), count(*)"
            " FROM coremachine.tasks WHERE job_id = %s GROUP BY stage ORDER BY stage",
            (job_id,),
        ).fetchall()
        assert per_stage == [(1, n, n), (2, n, n)], per_stage
        counters = conn.execute(
            "SELECT stage, completed, failed, remaining, status::text FROM coremachine.job_stages"
            " WHERE job_id = %s ORDER BY stage",
            (job_id,),
        ).fetchall()
        assert counters == [(1, n, 0, 0, "completed"), (2, n, 0, 0, "completed")], counters
        twice = conn.execute(
            "SELECT task_id, count(*) FROM coremachine.job_events WHERE job_id = %s"
            " AND event_type = 'task_completed' GROUP BY task_id HAVING count(*) <> 1",
            (job_id,),
        ).fetchall()
        assert twice == [], f"tasks completed more than once: {twice[:5]}"
        advancements = conn.execute(
            "SELECT count(*) FROM coremachine.job_events WHERE job_id = %s"
            " AND event_type = 'stage_completed'",
            (job_id,),
        ).fetchone()
        assert advancements == (2,)
