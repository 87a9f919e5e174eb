"""/api/jobs: submit, status, cancel, resubmit and the job's event stream."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from coremachine.services.api_gateway.auth import Principal, Role
from coremachine.services.api_gateway.convert import (
    diagnosis_to_json,
    failures_to_json,
    job_to_json,
)
from coremachine.services.api_gateway.http_context import JOB_ID_PATTERN, HttpContext, check_job_id
from coremachine.services.api_gateway.http_deps import QueryCheck
from coremachine.services.api_gateway.params import JOB_TYPE_PATTERN, parse_parameters
from coremachine.services.api_gateway.sse import job_events, sse_stream
from coremachine.shared.errors import InvalidArgument
from coremachine.shared.status_codes import job_status_name

JobIdPath = Annotated[
    str, Path(pattern=JOB_ID_PATTERN, description="64 hex characters", examples=["0" * 64])
]
_SUBMIT_BODY = {
    "requestBody": {
        "required": False,
        "description": "The job's parameters (a JSON object; empty = `{}`).",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def _last_seq(after: int | None, last_event_id: str | None) -> int:
    """Where a stream resumes: `?after=` wins over the Last-Event-ID header."""
    if after is not None:
        return after
    if last_event_id is None or not last_event_id.strip():
        return 0
    try:
        seq = int(last_event_id.strip())
    except ValueError:
        seq = -1
    if not 0 <= seq < 2**63:
        raise InvalidArgument(
            "Last-Event-ID: must be the seq of an event (an integer >= 0)", "Last-Event-ID"
        )
    return seq


def jobs_router(ctx: HttpContext) -> APIRouter:
    router = APIRouter(prefix="/api/jobs", tags=["jobs"])
    reader = Depends(ctx.needs(Role.READER))
    submitter = Depends(ctx.needs(Role.SUBMITTER))

    @router.post(
        "/submit/{job_type}",
        status_code=202,
        openapi_extra=_SUBMIT_BODY,
        responses={200: {"description": "The same job type and parameters: the existing job"}},
    )
    async def submit_job(
        request: Request,
        job_type: Annotated[str, Path(pattern=JOB_TYPE_PATTERN, examples=["hello_world"])],
        priority: Annotated[
            int | None,
            Query(ge=0, le=9, description="0..9, higher first (default: the job type's, else 5)"),
        ] = None,
        not_before: Annotated[
            dt.datetime | None,
            Query(description="the job waits, queued, until this time (ISO 8601 with a zone)"),
        ] = None,
        principal: Principal = submitter,
        _q: None = QueryCheck,
    ) -> JSONResponse:
        """Submits a job. 202 for a new job; 200 with the existing job for the same parameters."""
        # Any Content-Type is read as JSON: `curl -d` sends form encoding by default.
        parameters = parse_parameters(await request.body(), ctx.parameter_limits)
        if not_before is not None and not_before.tzinfo is None:
            raise InvalidArgument("not_before: give a time zone (e.g. Z)", "not_before")
        response = await ctx.backends.submit(
            job_type, json.dumps(parameters).encode(), priority, not_before
        )
        ctx.metrics.submitted.labels(response.job.job_type, str(response.created).lower()).inc()
        return JSONResponse(
            status_code=202 if response.created else 200,
            content={"created": response.created, "job": job_to_json(response.job)},
        )

    @router.get("/status/{job_id}", dependencies=[reader, QueryCheck])
    async def job_status(job_id: JobIdPath) -> dict[str, Any]:
        """A job's status, stage, per-stage progress, result and error."""
        return job_to_json(await ctx.backends.get_job(check_job_id(job_id)))

    @router.get("/{job_id}/diagnosis", dependencies=[reader, QueryCheck])
    async def job_diagnosis(job_id: JobIdPath) -> dict[str, Any]:
        """What holds a job that is not terminal, in words (`summary`, `reasons`) and
        fields: its current stage and counts, queues no live worker consumes, tasks in
        retry backoff and when they are due, the longest-running tasks and their
        workers, expired leases not reclaimed yet, its dead letters, a definition no
        orchestrator serves, the janitor's last sweep."""
        return diagnosis_to_json(await ctx.backends.diagnose_job(check_job_id(job_id)))

    @router.get("/{job_id}/failures", dependencies=[reader, QueryCheck])
    async def job_failures(
        job_id: JobIdPath,
        limit: Annotated[int, Query(ge=1, le=100, description="error groups to return")] = 20,
    ) -> dict[str, Any]:
        """The job's failed tasks grouped by error message, the largest groups first, each
        with its task count, stages, attempts and a few sample tasks. Bounded on any job:
        at most 10,000 failed tasks are read (`truncated` says the scan stopped there)."""
        return failures_to_json(await ctx.backends.task_failures(check_job_id(job_id), limit))

    @router.post("/{job_id}/cancel")
    async def cancel_job(
        job_id: JobIdPath, principal: Principal = submitter, _q: None = QueryCheck
    ) -> dict[str, Any]:
        """Cancels a job: queued and running tasks are cancelled, no new task starts.

        `changed` is false when the job had already ended (nothing to cancel).
        """
        response = await ctx.backends.cancel_job(
            check_job_id(job_id), f"cancelled through the API by {principal.name}"
        )
        return {"changed": response.changed, "job": job_to_json(response.job)}

    @router.post("/{job_id}/resubmit", dependencies=[submitter, QueryCheck])
    async def resubmit_job(
        job_id: JobIdPath,
        current_definition: Annotated[
            bool,
            Query(
                description="first move the job onto the definition of its type served now"
                " (for a job waiting for an orchestrator of the definition it started with)"
            ),
        ] = False,
    ) -> dict[str, Any]:
        """Re-runs a failed or cancelled job's failed and cancelled tasks (409 otherwise).

        With `current_definition`, a job of any status but completed is first moved onto the
        definition its type has now; a job that had not failed just goes on (nothing re-runs).
        """
        check_job_id(job_id)
        if current_definition:
            rebased = await ctx.backends.rebase_job(job_id)
            if job_status_name(rebased.job.status) not in ("failed", "cancelled"):
                return {
                    "tasks_requeued": 0,
                    "released": rebased.released,
                    "job": job_to_json(rebased.job),
                }
        response = await ctx.backends.redrive_job(job_id)
        return {"tasks_requeued": response.tasks_requeued, "job": job_to_json(response.job)}

    @router.get(
        "/{job_id}/events",
        dependencies=[reader, QueryCheck],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "SSE stream"}},
    )
    async def job_events_stream(
        job_id: JobIdPath,
        after: Annotated[
            int | None, Query(ge=0, le=2**63 - 1, description="resume after this seq")
        ] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
        job_level_only: Annotated[
            bool, Query(description="only job and stage events, without per-task ones")
        ] = False,
        end_only: Annotated[
            bool, Query(description="only the event that ends the job (for a waiter)")
        ] = False,
    ) -> StreamingResponse:
        """The job's events as Server-Sent Events (`id:` = seq), ending when the job ends.

        Resume with the `Last-Event-ID` header (browsers send it on reconnect) or `?after=`.
        """
        check_job_id(job_id)
        after_seq = _last_seq(after, last_event_id)
        # Fetched before the response starts, so an unknown job is a plain 404.
        first = await ctx.backends.list_events(
            job_id, after_seq, job_level_only=job_level_only, end_only=end_only
        )
        events = job_events(
            ctx.backends,
            job_id,
            after_seq,
            ctx.events_poll_seconds,
            ctx.stopping,
            first,
            job_level_only=job_level_only,
            end_only=end_only,
        )
        return StreamingResponse(
            sse_stream(events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
