"""/api/job-types: the job types the orchestrators serve, with their parameter schemas."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from coremachine.services.api_gateway.auth import Role
from coremachine.services.api_gateway.convert import job_type_to_json
from coremachine.services.api_gateway.http_context import HttpContext
from coremachine.services.api_gateway.http_deps import QueryCheck
from coremachine.services.api_gateway.params import JOB_TYPE_PATTERN
from coremachine.shared.errors import NotFound


def job_types_router(ctx: HttpContext) -> APIRouter:
    router = APIRouter(prefix="/api/job-types", tags=["job types"])
    reader = Depends(ctx.needs(Role.READER))

    @router.get("", dependencies=[reader, QueryCheck])
    async def list_job_types() -> dict[str, Any]:
        """Every job type: its app, definition fingerprint, stages and parameter JSON Schema."""
        return {"job_types": [job_type_to_json(i) for i in await ctx.backends.job_types()]}

    @router.get("/{job_type}", dependencies=[reader, QueryCheck])
    async def get_job_type(
        job_type: Annotated[str, Path(pattern=JOB_TYPE_PATTERN, examples=["hello_world"])],
    ) -> dict[str, Any]:
        """One job type (404 if no orchestrator serves it)."""
        for info in await ctx.backends.job_types():
            if info.job_type == job_type:
                return job_type_to_json(info)
        raise NotFound(f"no job type {job_type!r}")

    return router
