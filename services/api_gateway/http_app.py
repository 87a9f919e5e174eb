"""The HTTP surface (FastAPI; OpenAPI at /docs).

Every error has one body shape, {"error", "message", "request_id"}, and every
response carries an X-Request-ID header.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api_gateway.backends import Backends
from services.api_gateway.convert import job_to_json
from shared.errors import CoreMachineError, InvalidArgument, NotFound, Unavailable

_JOB_ID = re.compile(r"^[0-9a-f]{64}$")
_STATUS_FOR = {InvalidArgument: 400, NotFound: 404, Unavailable: 503}


def _error(status: int, error: str, message: str, request: Request) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"error": error, "message": message, "request_id": request.state.request_id},
    )


def create_app(backends: Backends, max_body_bytes: int = 1_048_576) -> FastAPI:
    app = FastAPI(
        title="CoreMachine",
        description="Submit fan-out/fan-in jobs and follow them.",
        version="1.0.0",
    )

    @app.middleware("http")
    async def request_id(request: Request, call_next):
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    @app.exception_handler(CoreMachineError)
    async def domain_error(request: Request, exc: CoreMachineError):
        status = _STATUS_FOR.get(type(exc), 500)
        return _error(status, type(exc).__name__, str(exc), request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        names = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}
        return _error(
            exc.status_code, names.get(exc.status_code, "HTTPError"), str(exc.detail), request
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        parts = [
            f"{'.'.join(str(p) for p in err['loc'] if p not in ('body', 'path', 'query'))}: {err['msg']}"
            for err in exc.errors()
        ]
        return _error(400, "InvalidArgument", "; ".join(parts), request)

    @app.post("/api/jobs/submit/{job_type}", status_code=202, tags=["jobs"])
    async def submit_job(job_type: str, request: Request) -> JSONResponse:
        """Submits a job. 202 for a new job; 200 with the existing job for the same parameters."""
        body = await request.body()
        if len(body) > max_body_bytes:
            return _error(413, "PayloadTooLarge", f"body exceeds {max_body_bytes} bytes", request)
        try:
            parameters: Any = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            raise InvalidArgument(f"body is not valid JSON: {exc}", "body") from None
        if not isinstance(parameters, dict):
            raise InvalidArgument("body must be a JSON object of parameters", "body")
        response = await backends.submit(job_type, json.dumps(parameters).encode())
        return JSONResponse(
            status_code=202 if response.created else 200,
            content={"created": response.created, "job": job_to_json(response.job)},
        )

    @app.get("/api/jobs/status/{job_id}", tags=["jobs"])
    async def job_status(job_id: str) -> dict[str, Any]:
        """A job's status, stage, per-stage progress, result and error."""
        if not _JOB_ID.match(job_id):
            raise InvalidArgument("job_id must be 64 lower-case hex characters", "job_id")
        return job_to_json(await backends.get_job(job_id))

    @app.get("/api/health", tags=["operations"])
    async def health(request: Request) -> JSONResponse:
        """200 when every internal service serves, 503 otherwise; no auth."""
        components = await backends.health()
        healthy = all(v == "serving" for v in components.values())
        return JSONResponse(
            status_code=200 if healthy else 503,
            content={"status": "healthy" if healthy else "unhealthy", "components": components},
            headers={"Cache-Control": "no-cache"},
        )

    return app
