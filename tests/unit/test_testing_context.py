"""coremachine.testing.task_context: what a user's handler test relies on."""

from __future__ import annotations

import asyncio

import pytest

from coremachine.app import PermanentError, PreviousResult
from coremachine.testing import RecordingRuntime, task_context


def resize(params: dict, ctx) -> dict:
    for done in range(1, 4):
        ctx.heartbeat({"row": done})
        ctx.progress(done, 3, f"row {done}")
    return {"rows": 3, "task_index": ctx.task_index}


def test_the_runtime_passed_in_records_heartbeats_and_progress():
    runtime = RecordingRuntime()
    ctx = task_context(task_index=4, runtime=runtime)
    assert resize({}, ctx) == {"rows": 3, "task_index": 4}
    # A progress report counts as a heartbeat too (details None).
    assert runtime.heartbeats == [{"row": 1}, None, {"row": 2}, None, {"row": 3}, None]
    assert runtime.reports == [(1, 3, "row 1"), (2, 3, "row 2"), (3, 3, "row 3")]


def test_ids_follow_the_arguments():
    ctx = task_context(job_id="a" * 64, stage=2, task_index=7, attempt=3, queue="gpu")
    assert (ctx.stage, ctx.task_index, ctx.attempt, ctx.queue) == (2, 7, 3, "gpu")
    assert ctx.task_id == f"{'a' * 64}-s2-7"


def test_cancelled_context_says_so_without_waiting():
    ctx = task_context(cancelled=True)
    assert ctx.is_cancelled
    assert asyncio.run(ctx.wait_cancelled(timeout=5)) is True
    assert not task_context().is_cancelled


def test_previous_results_only_when_the_stage_asked_for_them():
    previous = [PreviousResult(task_index=0, status="completed", result={"n": 1}, error=None)]
    assert list(task_context(previous_results=previous).previous_results) == previous
    with pytest.raises(PermanentError):
        task_context().previous_results  # noqa: B018 (the property raises)
