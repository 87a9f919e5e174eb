"""The stage barrier and the failure policy, applied inside a transaction.

`evaluate_stage` runs on a stage row just counted under its job's lock: it
fails the job when the stage's failures exceed its tolerance, and advances the
stage (next "stage ready", or "finalize") when nothing remains; the status
CAS in finish_stage makes either happen at most once. A job whose type has no
aggregator (default_result) is completed right here, with the default summary.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import psycopg
from psycopg.rows import class_row

from coremachine.services.state.events import NewEvent, append_events
from coremachine.services.state.job_traces import advancing, job_event, publishing
from coremachine.services.state.outbox import Outbox
from coremachine.services.state.rows import JobRow, StageRow
from coremachine.services.state.sql import Q
from coremachine.shared.domain.statuses import JobStatus, StageStatus
from coremachine.shared.job_summary import default_summary
from coremachine.shared.messages import JobContext, StageResultItem

# A finished stage's results travel with the orchestrator's message up to
# these sizes; above them the orchestrator reads them from the state service.
CONTEXT_MAX_TASKS = 256
CONTEXT_MAX_BYTES = 64 * 1024


async def evaluate_stage(
    conn: psycopg.AsyncConnection,
    outbox: Outbox,
    job: JobRow,
    stage_row: StageRow,
    failure: str | None,
    events: list[NewEvent] | None = None,
) -> bool:
    """Applies the barrier to a locked, freshly counted stage row.

    Fails the job when the stage's failures exceed its tolerance; advances
    the stage when nothing remains. Returns True if the stage completed.
    The status CAS in finish_stage makes both happen at most once. Events
    go to `events` when given (the caller appends them), else are written.
    """
    if stage_row.status != StageStatus.RUNNING or JobStatus(job.status).is_terminal:
        return False
    if stage_row.failures_exceed_tolerance():
        if failure is None:
            failure = await describe_failure(conn, job.job_id, stage_row.stage)
        with job_event("fail job", job, **{"coremachine.stage": stage_row.stage}):
            await fail_job_locked(conn, job.job_id, failure, events)
        return False
    if stage_row.remaining > 0:
        return False
    status = StageStatus.COMPLETED_WITH_ERRORS if stage_row.failed else StageStatus.COMPLETED
    summary = {
        "task_count": stage_row.task_count,
        "completed": stage_row.completed,
        "failed": stage_row.failed,
        "cancelled": stage_row.cancelled,
        "status": status,
    }
    last_stage = stage_row.stage >= job.total_stages
    cur = await conn.execute(
        Q.finish_stage,
        {
            "job_id": job.job_id,
            "stage": stage_row.stage,
            "status": status.value,
            "summary": json.dumps(summary),
            "next_stage": None if last_stage else stage_row.stage + 1,
        },
    )
    if await cur.fetchone() is None:
        return False
    # The advancement's span links the spans of the tasks it covers; the next
    # message continues the job's trace from it.
    async with advancing(conn, job, stage_row):
        await record_events(
            conn, events, [NewEvent(job.job_id, "stage_completed", stage_row.stage, data=summary)]
        )
        summaries = {**job.stage_results, str(stage_row.stage): summary}
        if last_stage and job.default_result:
            await complete_with_summary(conn, job, summaries, events)
            return True
        context = await job_context(conn, job, stage_row, summaries)
        with publishing(job.trace_context, outbox.jobs_queue, 1) as trace:
            message = (
                outbox.finalize(
                    job.job_id, job.job_type, context, definition=job.definition, trace=trace
                )
                if last_stage
                else outbox.stage_ready(
                    job.job_id,
                    job.job_type,
                    stage_row.stage + 1,
                    context,
                    definition=job.definition,
                    trace=trace,
                )
            )
            await outbox.write(conn, [message])
    return True


async def job_context(
    conn: psycopg.AsyncConnection,
    job: JobRow,
    stage_row: StageRow,
    stage_summaries: dict[str, Any],
) -> JobContext | None:
    """What the orchestrator needs to act on a small finished stage, or None
    when the stage (or what it carries) is too large for a message."""
    if stage_row.task_count > CONTEXT_MAX_TASKS:
        return None
    cur = await conn.execute(
        Q.stage_results,
        {"job_id": job.job_id, "stage": stage_row.stage, "after": -1, "limit": CONTEXT_MAX_TASKS},
    )
    rows = await cur.fetchall()
    size = sum(len(r[3] or "") + len(r[4] or "") for r in rows)
    if size > CONTEXT_MAX_BYTES:
        return None
    context = JobContext(
        parameters=job.parameters,
        total_stages=job.total_stages,
        stage_summaries=stage_summaries,
        results=[
            StageResultItem(task_index=i, status=status, result_json=result, error=error or "")
            for i, _task_id, status, result, error in rows
        ],
    )
    # Parameters count too: the whole message must stay well inside a broker's
    # message size limit (256 KB on Service Bus standard).
    return context if len(context.model_dump_json()) <= CONTEXT_MAX_BYTES else None


async def complete_with_summary(
    conn: psycopg.AsyncConnection,
    job: JobRow,
    stage_summaries: dict[str, Any],
    events: list[NewEvent] | None,
) -> None:
    """Completes a default_result job whose last stage just finished: its
    result is the default summary, recorded in this transaction."""
    failed: list[dict[str, Any]] = []
    if any(int(s.get("failed", 0)) for s in stage_summaries.values()):
        cur = await conn.execute(Q.failed_tasks_of_job, {"job_id": job.job_id})
        names = ("task_id", "stage", "task_index", "error")
        failed = [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]
    result = default_summary(job.job_type, stage_summaries, failed)
    job_cur = conn.cursor(row_factory=class_row(JobRow))
    with job_event("complete job", job):
        await job_cur.execute(Q.complete_job, {"job_id": job.job_id, "result": json.dumps(result)})
        done = await job_cur.fetchone()
    if done is None:  # not processing: nothing to complete
        return
    await record_events(
        conn, events, [NewEvent(job.job_id, "job_completed", data={"status": done.status})]
    )


async def describe_failure(conn: psycopg.AsyncConnection, job_id: str, stage: int) -> str:
    cur = await conn.execute(Q.first_failed_task, {"job_id": job_id, "stage": stage})
    row = await cur.fetchone()
    if row is None:
        return f"stage {stage} failed"
    return f"task {row[0]} failed after {row[1]} attempt(s): {row[2]}"


async def fail_job_locked(
    conn: psycopg.AsyncConnection,
    job_id: str,
    error: str,
    events: list[NewEvent] | None = None,
) -> bool:
    cur = await conn.execute(Q.fail_job, {"job_id": job_id, "error": error})
    if await cur.fetchone() is None:
        return False
    await conn.execute(Q.fail_running_stages, {"job_id": job_id})
    cancelled = await cancel_unfinished(conn, job_id)
    await record_events(
        conn,
        events,
        [NewEvent(job_id, "job_failed", data={"error": error, "tasks_cancelled": cancelled})],
    )
    return True


async def cancel_unfinished(conn: psycopg.AsyncConnection, job_id: str) -> int:
    cur = await conn.execute(Q.cancel_unfinished_tasks, {"job_id": job_id})
    cancelled = Counter(row[0] for row in await cur.fetchall())
    if cancelled:
        await conn.execute(
            Q.count_cancelled,
            {"job_id": job_id, "stages": list(cancelled), "counts": list(cancelled.values())},
        )
    return cancelled.total()


async def record_events(
    conn: psycopg.AsyncConnection, collected: list[NewEvent] | None, new: list[NewEvent]
) -> None:
    """Adds events to the caller's batch, or writes them now when there is none."""
    if collected is None:
        await append_events(conn, new)
    else:
        collected.extend(new)
