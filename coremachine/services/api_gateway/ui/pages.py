"""The dashboard's pages (GET): jobs, a job, its tasks, job types, workers, queues.

Every page reads through the gateway's backends, the same calls the JSON API
makes, and renders the same bodies (convert.py). No page reads all tasks of a
job: stage counters come with the job, task lists are pages, and failures are
grouped by the state service over a bounded number of failed tasks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from coremachine.common.v1 import common_pb2
from coremachine.services.api_gateway.convert import (
    JOB_STATUSES,
    TASK_STATUSES,
    dead_letter_to_json,
    diagnosis_to_json,
    failures_to_json,
    job_to_json,
    job_type_to_json,
    queue_to_json,
    task_to_json,
    worker_to_json,
)
from coremachine.services.api_gateway.http_context import check_job_id
from coremachine.services.api_gateway.http_deps import parse_since
from coremachine.services.api_gateway.ui.context import Dashboard
from coremachine.services.api_gateway.ui.routing import ui_route_class
from coremachine.services.api_gateway.ui.views import TERMINAL, form_fields, stage_bars
from coremachine.shared.errors import CoreMachineError, InvalidArgument, NotFound

PAGE_SIZE = 50
FAILURE_GROUPS = 20
# Time windows the jobs page offers (hours back, as the API's `since`).
WINDOWS = {"": "any time", "1": "last hour", "24": "last 24 hours", "168": "last 7 days"}


def _option(value: str | None, allowed: dict[str, Any] | tuple[str, ...], field: str) -> str:
    value = value or ""
    if value and value not in allowed:
        raise InvalidArgument(f"{field}: unknown value {value!r}", field)
    return value


def pages_router(ui: Dashboard) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ui_route_class(ui))
    backends = ui.http.backends

    @router.get("")
    async def home(request: Request) -> RedirectResponse:
        await ui.user(request)
        return RedirectResponse("/ui/jobs", 303)

    @router.get("/jobs")
    async def jobs_page(
        request: Request,
        status: str | None = None,
        job_type: str | None = None,
        since: str | None = None,
        page_token: str = "",
    ) -> HTMLResponse:
        user = await ui.user(request)
        status = _option(status, JOB_STATUSES, "status")
        since = _option(since, WINDOWS, "since")
        cutoff = parse_since(since)
        listing, stats, types = await asyncio.gather(
            backends.list_jobs(
                JOB_STATUSES[status] if status else common_pb2.JOB_STATUS_UNSPECIFIED,
                job_type or "",
                PAGE_SIZE,
                page_token[:512],
            ),
            backends.stats(),
            backends.job_types(timeout=2.0),
            return_exceptions=True,
        )
        if isinstance(listing, BaseException):
            raise listing
        jobs = [job_to_json(j) for j in listing.jobs]
        next_token = listing.next_page_token
        if cutoff is not None:
            # Newest first: once a job is older than the window, so is every later one.
            kept = [j for j in jobs if dt.datetime.fromisoformat(j["created_at"][:-1]).replace(
                tzinfo=dt.UTC) >= cutoff]  # fmt: skip
            if len(kept) < len(jobs):
                next_token = ""
            jobs = kept
        counts = dict(stats.jobs_by_status) if not isinstance(stats, BaseException) else {}
        type_names = sorted(i.job_type for i in types) if isinstance(types, list) else []
        return ui.render(
            request,
            "jobs.html",
            user,
            jobs=jobs,
            next_token=next_token,
            counts=counts,
            statuses=list(JOB_STATUSES),
            windows=WINDOWS,
            job_types=type_names,
            filters={"status": status, "job_type": job_type or "", "since": since},
            first_page=not page_token,
        )

    @router.get("/jobs/{job_id}")
    async def job_page(request: Request, job_id: str) -> HTMLResponse:
        user = await ui.user(request)
        check_job_id(job_id)
        job = job_to_json(await backends.get_job(job_id))
        diagnosis = None
        if job["status"] not in TERMINAL:
            try:
                diagnosis = diagnosis_to_json(await backends.diagnose_job(job_id))
            except CoreMachineError:
                diagnosis = None  # the page still shows the job
        failures = None
        if any(s["failed"] for s in job["stages"]) or job["status"] == "failed":
            failures = failures_to_json(await backends.task_failures(job_id, FAILURE_GROUPS))
        return ui.render(
            request,
            "job.html",
            user,
            job=job,
            bars=stage_bars(job, diagnosis),
            diagnosis=diagnosis,
            failures=failures,
            terminal=job["status"] in TERMINAL,
            can_resubmit=job["status"] in ("failed", "cancelled"),
        )

    @router.get("/jobs/{job_id}/tasks")
    async def tasks_page(
        request: Request,
        job_id: str,
        stage: int | None = None,
        status: str | None = None,
        page_token: str = "",
    ) -> HTMLResponse:
        user = await ui.user(request)
        check_job_id(job_id)
        status = _option(status, TASK_STATUSES, "status")
        job, page = await asyncio.gather(
            backends.get_job(job_id),
            backends.list_tasks(
                job_id,
                stage or 0,
                TASK_STATUSES[status] if status else common_pb2.TASK_STATUS_UNSPECIFIED,
                PAGE_SIZE,
                page_token[:512],
            ),
        )
        return ui.render(
            request,
            "tasks.html",
            user,
            job=job_to_json(job),
            tasks=[task_to_json(t) for t in page.tasks],
            next_token=page.next_page_token,
            statuses=list(TASK_STATUSES),
            filters={"stage": stage or "", "status": status},
            first_page=not page_token,
        )

    @router.get("/job-types")
    async def job_types_page(request: Request) -> HTMLResponse:
        user = await ui.user(request)
        infos = [job_type_to_json(i) for i in await backends.job_types()]
        return ui.render(request, "job_types.html", user, job_types=infos)

    @router.get("/job-types/{job_type}")
    async def job_type_page(request: Request, job_type: str) -> HTMLResponse:
        user = await ui.user(request)
        info = await job_type_info(ui, job_type)
        return ui.render(
            request,
            "job_type.html",
            user,
            job_type=info,
            fields=form_fields(info["parameters_schema"]),
            values={},
            error=None,
        )

    @router.get("/workers")
    async def workers_page(request: Request) -> HTMLResponse:
        user = await ui.user(request)
        workers = [worker_to_json(w) for w in await backends.workers(0)]
        pools: dict[str, dict[str, int]] = {}
        for w in workers:
            for queue in w["queues"]:
                pool = pools.setdefault(queue, {"live": 0, "lost": 0, "slots": 0, "busy": 0})
                if w["state"] == "live":
                    pool["live"] += 1
                    pool["slots"] += w["concurrency"]
                    pool["busy"] += w["in_flight"]
                elif w["state"] == "lost":
                    pool["lost"] += 1
        return ui.render(request, "workers.html", user, workers=workers, pools=pools)

    @router.get("/queues")
    async def queues_page(request: Request) -> HTMLResponse:
        user = await ui.user(request)
        infos, letters = await asyncio.gather(
            backends.queues(),
            asyncio.gather(*(backends.dead_letters(q, PAGE_SIZE) for q in ui.queues)),
        )
        stats = {info.queue: queue_to_json(info) for info in infos}
        queues = [
            {**stats.get(q, {"queue": q}), "messages": [dead_letter_to_json(m) for m in found]}
            for q, found in zip(ui.queues, letters, strict=True)
        ]
        done = {
            "replayed": "Replayed {count} dead letter(s) to their queue.",
            "failed": "Marked failed: {count} job(s) failed, the dead letter purged.",
        }.get(request.query_params.get("done", ""))
        count = request.query_params.get("count", "0")
        notice = done.format(count=count if count.isdigit() else "0") if done else ""
        return ui.render(request, "queues.html", user, queues=queues, notice=notice)

    return router


async def job_type_info(ui: Dashboard, job_type: str) -> dict[str, Any]:
    for info in await ui.http.backends.job_types():
        if info.job_type == job_type:
            return job_type_to_json(info)
    raise NotFound(f"no job type {job_type!r}")
