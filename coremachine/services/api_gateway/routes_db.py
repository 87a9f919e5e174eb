"""/api/db: job and task queries, statistics and the guarded schema redeploy.

Lists are cursor-paginated: pass `next_page_token` back as `page_token`.
Filters the state service cannot apply (`since`, and `job_type` on tasks)
are applied here to each page, so a page may hold fewer items than `limit`
while `next_page_token` is still set; an empty token means the end.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from coremachine.common.v1 import common_pb2
from coremachine.services.api_gateway.auth import Role
from coremachine.services.api_gateway.convert import (
    JOB_STATUSES,
    TASK_STATUSES,
    job_to_json,
    stats_to_json,
    task_to_json,
)
from coremachine.services.api_gateway.http_context import HttpContext, check_job_id
from coremachine.services.api_gateway.http_deps import QueryCheck, clamp_limit, parse_since
from coremachine.services.api_gateway.params import JOB_TYPE_PATTERN
from coremachine.services.api_gateway.routes_jobs import JobIdPath
from coremachine.shared.errors import PermissionDenied

JobStatusFilter = StrEnum("JobStatusFilter", {k: k for k in JOB_STATUSES})  # type: ignore[misc]
TaskStatusFilter = StrEnum("TaskStatusFilter", {k: k for k in TASK_STATUSES})  # type: ignore[misc]

Since = Annotated[
    str | None,
    Query(
        max_length=64,
        description="Only items created since: hours back (`24`) or an ISO timestamp",
        examples=["24", "2026-01-31T12:00:00Z"],
    ),
]
Limit = Annotated[int, Query(ge=1, description="Page size; larger values are clamped")]
PageToken = Annotated[str, Query(max_length=512, description="`next_page_token` of a page")]
Stage = Annotated[int | None, Query(ge=1, le=10_000)]
JobType = Annotated[str | None, Query(pattern=JOB_TYPE_PATTERN)]


def _created(item: common_pb2.Job | common_pb2.Task) -> dt.datetime:
    return item.created_at.ToDatetime(tzinfo=dt.UTC)


def db_router(ctx: HttpContext) -> APIRouter:
    router = APIRouter(prefix="/api/db", tags=["database"])
    reader = Depends(ctx.needs(Role.READER))
    admin = Depends(ctx.needs(Role.ADMIN))

    @router.get("/jobs", dependencies=[reader, QueryCheck])
    async def list_jobs(
        status: JobStatusFilter | None = None,
        job_type: JobType = None,
        since: Since = None,
        limit: Limit = 50,
        page_token: PageToken = "",
    ) -> dict[str, Any]:
        """Jobs, newest first, filtered by status, job type and age."""
        cutoff = parse_since(since)
        response = await ctx.backends.list_jobs(
            JOB_STATUSES[status] if status else common_pb2.JOB_STATUS_UNSPECIFIED,
            job_type or "",
            clamp_limit(limit, ctx.max_list_limit),
            page_token,
        )
        jobs = list(response.jobs)
        token = response.next_page_token
        if cutoff is not None:
            # Newest first: once a job is older than the cutoff, so is every later one.
            kept = [j for j in jobs if _created(j) >= cutoff]
            if len(kept) < len(jobs):
                token = ""
            jobs = kept
        return {"jobs": [job_to_json(j) for j in jobs], "next_page_token": token}

    @router.get("/jobs/{job_id}", dependencies=[reader, QueryCheck])
    async def get_job(job_id: JobIdPath) -> dict[str, Any]:
        """One job with its per-stage progress and stage results (404 if unknown)."""
        job = await ctx.backends.get_job(check_job_id(job_id))
        return {"job": job_to_json(job, stage_results=True)}

    async def _tasks(
        job_id: str,
        status: TaskStatusFilter | None,
        stage: int | None,
        job_type: str | None,
        since: str | None,
        limit: int,
        page_token: str,
    ) -> dict[str, Any]:
        cutoff = parse_since(since)
        response = await ctx.backends.list_tasks(
            job_id,
            stage or 0,
            TASK_STATUSES[status] if status else common_pb2.TASK_STATUS_UNSPECIFIED,
            clamp_limit(limit, ctx.max_list_limit),
            page_token,
        )
        tasks = [
            t
            for t in response.tasks
            if (not job_type or t.job_type == job_type)
            and (cutoff is None or _created(t) >= cutoff)
        ]
        return {
            "tasks": [task_to_json(t) for t in tasks],
            "next_page_token": response.next_page_token,
        }

    @router.get("/tasks", dependencies=[reader, QueryCheck])
    async def list_tasks(
        status: TaskStatusFilter | None = None,
        stage: Stage = None,
        job_type: JobType = None,
        since: Since = None,
        limit: Limit = 100,
        page_token: PageToken = "",
    ) -> dict[str, Any]:
        """Tasks of every job by job, stage and index, filtered by status, stage, type and age."""
        return await _tasks("", status, stage, job_type, since, limit, page_token)

    @router.get("/tasks/{job_id}", dependencies=[reader, QueryCheck])
    async def job_tasks(
        job_id: JobIdPath,
        status: TaskStatusFilter | None = None,
        stage: Stage = None,
        limit: Limit = 100,
        page_token: PageToken = "",
    ) -> dict[str, Any]:
        """One job's tasks by stage and index (404 for an unknown job)."""
        body = await _tasks(check_job_id(job_id), status, stage, None, None, limit, page_token)
        return {"job_id": job_id, **body}

    @router.get("/stats", dependencies=[reader, QueryCheck])
    async def stats() -> dict[str, Any]:
        """Counts of jobs and tasks by status, and table statistics."""
        body = stats_to_json(await ctx.backends.stats())
        body["generated_at"] = dt.datetime.now(dt.UTC).isoformat()
        return body

    @router.post("/schema/redeploy", dependencies=[admin, QueryCheck])
    async def redeploy_schema(
        confirm: Annotated[Literal["yes"], Query(description="`yes`: every job is dropped")],
    ) -> dict[str, Any]:
        """Drops and re-creates the schema (development only; the state service must allow it)."""
        try:
            applied = await ctx.backends.redeploy_schema()
        except PermissionDenied:
            raise PermissionDenied(
                "schema redeploy is refused by the state service: it is disabled unless"
                " STATE_ALLOW_SCHEMA_REDEPLOY=true is set there (development only)"
            ) from None
        return {"operation": "schema_redeploy", "migrations_applied": applied}

    return router
