"""The latency short-cuts, end to end: what they save is visible in the events.

Events carry their transaction's start time, so two events with the same
timestamp were written by the same transaction.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.e2e.conftest import wait_for_job

pytestmark = pytest.mark.e2e


def events_of(stack, job_id: str) -> list[tuple[str, int | None, object]]:
    with psycopg.connect(stack.database_url) as conn:
        return conn.execute(
            "SELECT event_type, stage, created_at FROM coremachine.job_events"
            " WHERE job_id = %s AND task_id IS NULL ORDER BY seq",
            (job_id,),
        ).fetchall()


def test_stage_one_starts_with_the_job_and_a_summary_job_ends_with_its_last_task(stack, http):
    r = http.post("/api/jobs/submit/noop", json={"n": 3, "run": "short paths"})
    assert r.status_code in (200, 202), r.text
    job_id = r.json()["job"]["job_id"]
    job = wait_for_job(http, job_id)

    assert job["status"] == "completed"
    assert job["result"]["total_tasks"] == 6
    assert job["result"]["stages"]["2"]["completed"] == 3
    assert job["result"]["failed_tasks"] == []
    events = events_of(stack, job_id)
    assert [(e, s) for e, s, _ in events] == [
        ("job_created", None),
        ("stage_started", 1),
        ("stage_completed", 1),
        ("stage_started", 2),
        ("stage_completed", 2),
        ("job_completed", None),
    ]
    at = {(e, s): t for e, s, t in events}
    # Planned at submit: stage 1 was created in the job's transaction.
    assert at[("job_created", None)] == at[("stage_started", 1)]
    # No aggregator: completed in the transaction that completed the last task.
    assert at[("stage_completed", 2)] == at[("job_completed", None)]


def test_a_job_with_an_aggregator_is_still_finalized_by_the_orchestrator(stack, http):
    r = http.post("/api/jobs/submit/hello_world", json={"n": 2, "message": "short paths"})
    job_id = r.json()["job"]["job_id"]
    job = wait_for_job(http, job_id)
    assert job["status"] == "completed" and len(job["result"]["replies"]) == 2
    at = {(e, s): t for e, s, t in events_of(stack, job_id)}
    assert at[("job_created", None)] == at[("stage_started", 1)]
    assert at[("stage_completed", 2)] != at[("job_completed", None)]
