"""A job's failures grouped by error message, in PostgreSQL, bounded on any job."""

from __future__ import annotations

import pytest

from coremachine.services.state import failure_report
from coremachine.services.state.failure_report import failures_by_error
from coremachine.shared.errors import NotFound
from tests.integration.state_fixtures import claim_stage, fail, make_job, make_stage, new_job_id, ok


async def failed_job(store, errors: dict[int, str], n: int) -> str:
    """A job whose stage 1 has n tasks: those in `errors` fail for good with that error."""
    job_id = await make_job(store, total_stages=1)
    await make_stage(store, job_id, 1, n, max_failed=n)
    claimed = await claim_stage(store, job_id, 1)
    outcomes = [
        fail(task_id, token, errors[i], retryable=False) if i in errors else ok(task_id, token)
        for i, (task_id, token) in claimed.items()
    ]
    await store.complete_tasks(outcomes)
    return job_id


async def test_failed_tasks_are_grouped_by_error_largest_first_with_samples(store, pool):
    errors = {i: "disk full" for i in range(0, 24, 2)} | {i: "timeout" for i in (1, 3, 5)}
    job_id = await failed_job(store, errors, n=30)
    report = await failures_by_error(pool, job_id, 20)
    assert [(g.error, g.tasks, g.stages) for g in report.groups] == [
        ("disk full", 12, [1]),
        ("timeout", 3, [1]),
    ]
    assert report.scanned == 15 and not report.truncated
    disk = report.groups[0]
    assert [s.task_index for s in disk.samples] == [0, 2, 4, 6, 8]
    assert disk.min_attempt == disk.max_attempt == 1
    assert all(s.task_id.startswith(job_id) for s in disk.samples)
    # Fewer groups asked: the largest.
    assert [g.error for g in (await failures_by_error(pool, job_id, 1)).groups] == ["disk full"]


async def test_the_scan_is_bounded_and_says_so(store, pool, monkeypatch: pytest.MonkeyPatch):
    job_id = await failed_job(store, {i: f"error {i % 3}" for i in range(12)}, n=12)
    monkeypatch.setattr(failure_report, "SCAN_LIMIT", 5)
    report = await failures_by_error(pool, job_id, 20)
    assert report.scanned == 5 and report.truncated
    assert sum(g.tasks for g in report.groups) == 5


async def test_a_job_without_failures_has_no_groups_and_an_unknown_job_is_not_found(store, pool):
    job_id = await failed_job(store, {}, n=3)
    report = await failures_by_error(pool, job_id, 20)
    assert report.groups == [] and report.scanned == 0
    with pytest.raises(NotFound):
        await failures_by_error(pool, new_job_id(), 20)
