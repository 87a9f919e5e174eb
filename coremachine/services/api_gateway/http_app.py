"""The HTTP surface (FastAPI; OpenAPI at /docs and /openapi.json).

Every error has one body shape, {"error", "message", "request_id"}, and every
response carries an X-Request-ID header. Routes live in routes_*.py; this
module assembles them with the middleware, the error handlers and auth.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from coremachine.services.api_gateway.auth import Authenticator
from coremachine.services.api_gateway.backends import Backends
from coremachine.services.api_gateway.errors import install_error_handlers
from coremachine.services.api_gateway.http_context import HttpContext
from coremachine.services.api_gateway.http_deps import role_guard
from coremachine.services.api_gateway.metrics import GatewayMetrics, HttpMetricsMiddleware
from coremachine.services.api_gateway.middleware import RequestMiddleware
from coremachine.services.api_gateway.openapi import with_job_types
from coremachine.services.api_gateway.params import ParameterLimits
from coremachine.services.api_gateway.routes_db import db_router
from coremachine.services.api_gateway.routes_job_types import job_types_router
from coremachine.services.api_gateway.routes_jobs import jobs_router
from coremachine.services.api_gateway.routes_monitor import monitor_router
from coremachine.services.api_gateway.routes_schedules import schedules_router
from coremachine.services.api_gateway.routes_workers import workers_router
from coremachine.services.api_gateway.ui.actions import actions_router
from coremachine.services.api_gateway.ui.context import UI_DIR, Dashboard
from coremachine.services.api_gateway.ui.pages import pages_router
from coremachine.services.api_gateway.ui.schedules import schedule_pages_router
from coremachine.services.api_gateway.ui.session import SessionCodec
from coremachine.shared.errors import CoreMachineError

# /openapi.json asks the orchestrators for the job types at most this long.
_JOB_TYPES_TIMEOUT = 2.0


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str
    message: str
    request_id: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Bad input; the message names the field",
        401: "No API key, or an unknown one",
        403: "The key's role does not allow this",
        404: "No such job or schedule (or route)",
        409: "The job's state does not allow this (or the schedule exists)",
        413: "Request body too large",
    }.items()
}


def create_app(
    backends: Backends,
    authenticator: Authenticator,
    *,
    max_body_bytes: int = 1_048_576,
    parameter_limits: ParameterLimits | None = None,
    max_list_limit: int = 1000,
    events_poll_seconds: float = 10.0,
    queues: tuple[str, ...] = ("jobs", "tasks"),
    stopping: asyncio.Event | None = None,
    metrics: GatewayMetrics | None = None,
    ui_session_secret: str | None = None,
    ui_secure_cookies: bool = False,
) -> FastAPI:
    app = FastAPI(
        title="CoreMachine",
        description=(
            "Submit fan-out/fan-in jobs and follow them. Send an API key as"
            " `Authorization: Bearer <key>` or `X-API-Key: <key>`; roles are"
            " reader < submitter < admin. `/api/health` needs no key."
        ),
        version="1.0.0",
        responses=_ERRORS,
        # Served below, with the job types' parameter schemas added per request.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    sessions = SessionCodec(ui_session_secret)
    ctx = HttpContext(
        backends=backends,
        needs=role_guard(authenticator, sessions),
        parameter_limits=parameter_limits or ParameterLimits(),
        stopping=stopping or asyncio.Event(),
        max_list_limit=max_list_limit,
        events_poll_seconds=events_poll_seconds,
        metrics=metrics or GatewayMetrics(),
    )
    app.add_middleware(RequestMiddleware, max_body_bytes=max_body_bytes)
    # Outermost: every response counts, the request middleware's 413 and 500 too.
    app.add_middleware(HttpMetricsMiddleware, metrics=ctx.metrics)
    install_error_handlers(app)
    app.include_router(jobs_router(ctx))
    app.include_router(schedules_router(ctx))
    app.include_router(job_types_router(ctx))
    app.include_router(db_router(ctx))
    app.include_router(monitor_router(ctx, list(queues)))
    app.include_router(workers_router(ctx))
    dashboard = Dashboard(ctx, authenticator, sessions, queues, ui_secure_cookies)
    app.include_router(pages_router(dashboard))
    app.include_router(actions_router(dashboard))
    app.include_router(schedule_pages_router(dashboard))
    app.mount("/ui/static", StaticFiles(directory=UI_DIR / "static"), name="ui-static")
    _drop_default_422(app)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document() -> JSONResponse:
        try:
            infos = await backends.job_types(timeout=_JOB_TYPES_TIMEOUT)
        except CoreMachineError:
            infos = []  # no orchestrator answers: the routes alone
        return JSONResponse(with_job_types(app.openapi(), infos))

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="CoreMachine API")

    return app


def _drop_default_422(app: FastAPI) -> None:
    """Bad input is a 400 with the common body here; FastAPI's 422 schema would mislead."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
