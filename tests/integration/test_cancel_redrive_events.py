"""Cancel, redrive (resubmit a failed job) and the per-job event record."""

from __future__ import annotations

import pytest

from coremachine.services.state.store_models import Claim
from coremachine.shared.errors import Conflict
from tests.integration.state_fixtures import (
    claim_stage,
    fail,
    make_job,
    make_stage,
    ok,
    outbox_ids,
    stage_row,
)


async def test_cancel_stops_new_tasks_and_rejects_late_outcomes(store, pg_conn):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 3)
    tasks, _ = await store.list_tasks(job_id, 1, None, 10, "")
    [running] = await store.claim_tasks("w", 60, [Claim(tasks[0].task_id, 1)])
    view, changed = await store.cancel_job(job_id, "user asked")
    assert changed and view.job.status == "cancelled"
    # Queued tasks cannot start any more, and the running one cannot report.
    [refused] = await store.claim_tasks("w", 60, [Claim(tasks[1].task_id, 1)])
    assert refused.task is None and refused.reason == "task_cancelled"
    [late], stages = await store.complete_tasks(
        [ok(tasks[0].task_id, str(running.task.lease_token))]
    )
    assert not late.accepted and stages == []
    listed, _ = await store.list_tasks(job_id, None, None, 10, "")
    assert {t.status for t in listed} == {"cancelled"}
    _, again = await store.cancel_job(job_id, "twice")
    assert not again


async def test_redrive_reruns_only_failed_and_cancelled_tasks_from_the_failed_stage(store, pg_conn):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 4)
    claimed = await claim_stage(store, job_id, 1)
    # Task 0 succeeds, task 1 fails for good: the job fails and 2, 3 are cancelled.
    await store.complete_tasks(
        [ok(*claimed[0], {"kept": True}), fail(*claimed[1], retryable=False)]
    )
    assert (await store.get_job(job_id)).job.status == "failed"
    with pytest.raises(Conflict):
        await store.redrive_job(await make_job(store))  # a queued job cannot be redriven
    view, requeued = await store.redrive_job(job_id)
    assert requeued == 3 and view.job.status == "processing" and view.job.error_details is None
    tasks = {t.task_index: t for t in (await store.list_tasks(job_id, 1, None, 10, ""))[0]}
    assert tasks[0].status == "completed" and tasks[0].result_data == {"kept": True}
    assert [(tasks[i].status, tasks[i].attempt) for i in (1, 2, 3)] == [("queued", 2)] * 3
    assert {f"{tasks[i].task_id}:2" for i in (1, 2, 3)} <= set(await outbox_ids(pg_conn))
    row = await stage_row(pg_conn, job_id, 1)
    assert (row["status"], row["remaining"], row["completed"], row["failed"]) == (
        "running",
        3,
        1,
        0,
    )
    # The rerun gets a fresh retry budget and the stage advances once they finish.
    granted = await store.claim_tasks("w", 60, [Claim(tasks[i].task_id, 2) for i in (1, 2, 3)])
    _, stages = await store.complete_tasks(
        [ok(g.task_id, str(g.task.lease_token)) for g in granted]
    )
    assert stages == [(job_id, 1)]
    assert (await outbox_ids(pg_conn)).count(f"{job_id}:stage:2") == 1


async def test_events_have_a_gap_free_sequence_per_job_and_resume(store):
    job_id = await make_job(store, total_stages=1)
    await make_stage(store, job_id, 1, 3)
    claimed = await claim_stage(store, job_id, 1)
    await store.complete_tasks([ok(*c) for c in claimed.values()])
    await store.complete_job(job_id, {})
    page = await store.events_page(job_id, 0, 1000)
    events = page.events
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    types = [e.event_type for e in events]
    assert types[0] == "job_created" and types[-1] == "job_completed"
    assert types.count("task_started") == 3 and types.count("task_completed") == 3
    assert page.complete and page.job is not None and page.job.job.status == "completed"
    rest = await store.events_page(job_id, 4, 1000)
    assert [e.seq for e in rest.events] == list(range(5, len(events) + 1)) and rest.complete
    head = await store.events_page(job_id, 0, 2)
    assert [e.seq for e in head.events] == [1, 2] and not head.complete and head.job is None


async def test_job_level_events_leave_out_the_per_task_ones(store):
    job_id = await make_job(store, total_stages=1)
    await make_stage(store, job_id, 1, 3)
    claimed = await claim_stage(store, job_id, 1)
    await store.complete_tasks([ok(*c) for c in claimed.values()])
    page = await store.events_page(job_id, 0, 1000, job_level_only=True)
    types = [e.event_type for e in page.events]
    assert types == ["job_created", "stage_started", "stage_completed"]
    assert not page.complete  # not finalized yet
    await store.complete_job(job_id, {})
    page = await store.events_page(job_id, page.events[-1].seq, 1000, job_level_only=True)
    assert [e.event_type for e in page.events] == ["job_completed"] and page.complete
