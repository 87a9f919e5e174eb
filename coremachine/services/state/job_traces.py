"""The state service's spans in each job's trace, and the context its messages carry.

Every message the state service writes for a job is published under a
producer span in the job's trace (shared/tracing.job_span): the messages
carry that span's traceparent, and the consumer's span continues from it.
With tracing off each helper yields at once and messages carry nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
from opentelemetry.trace import SpanKind

from coremachine.services.state.rows import JobRow, StageRow
from coremachine.services.state.sql import Q
from coremachine.shared import tracing

_OFF: dict[str, str] = {}


@contextlib.contextmanager
def publishing(
    job_trace: str | None, queue: str, count: int, *, parent_trace: str | None = None
) -> Iterator[dict[str, str]]:
    """A producer span for `count` messages of one job to `queue`; yields the
    properties that carry its context. `parent_trace`: a span of the job's
    trace to publish under (a failed attempt, for its retry)."""
    if not tracing.enabled():
        yield _OFF
        return
    with tracing.job_span(
        f"publish {queue}",
        parent_trace or job_trace,
        kind=SpanKind.PRODUCER,
        attributes=tracing.messaging_attributes("publish", queue, count),
    ):
        yield tracing.message_headers()


@contextlib.contextmanager
def job_event(name: str, job: JobRow, **attributes: Any) -> Iterator[None]:
    """A span in the job's trace for a step of its life (created, completed, failed, ...)."""
    if not tracing.enabled():
        yield
        return
    with tracing.job_span(
        name,
        job.trace_context,
        attributes={
            "coremachine.job.id": job.job_id,
            "coremachine.job.type": job.job_type,
            **attributes,
        },
    ):
        yield


@contextlib.asynccontextmanager
async def advancing(
    conn: psycopg.AsyncConnection, job: JobRow, stage_row: StageRow
) -> AsyncIterator[None]:
    """The span of a stage's advancement, linked to the spans of its tasks'
    last attempts (up to the SDK's link limit: a large stage links its first ones)."""
    if not tracing.enabled():
        yield
        return
    cur = await conn.execute(
        Q.stage_task_traces,
        {"job_id": job.job_id, "stage": stage_row.stage, "limit": tracing.MAX_LINKS},
    )
    links = tracing.links_to([row[0] for row in await cur.fetchall()])
    with tracing.job_span(
        f"advance stage {stage_row.stage}",
        job.trace_context,
        attributes={
            "coremachine.job.id": job.job_id,
            "coremachine.job.type": job.job_type,
            "coremachine.stage": stage_row.stage,
            "coremachine.stage.task_count": stage_row.task_count,
            "coremachine.stage.completed": stage_row.completed,
            "coremachine.stage.failed": stage_row.failed,
            "coremachine.stage.linked_tasks": len(links),
        },
        links=links,
    ):
        yield


@contextlib.contextmanager
def creating(job_id: str, job_type: str) -> Iterator[str | None]:
    """The span a new job is created under; yields its traceparent, stored
    with the job as the context the rest of the job's trace hangs from."""
    if not tracing.enabled():
        yield None
        return
    with tracing.span(
        f"create job {job_type}",
        attributes={"coremachine.job.id": job_id, "coremachine.job.type": job_type},
    ):
        yield tracing.current_traceparent() or None
