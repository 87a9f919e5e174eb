"""/api/workers: the workers, live and recently gone, as they last heartbeated."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from coremachine.services.api_gateway.auth import Role
from coremachine.services.api_gateway.convert import worker_to_json
from coremachine.services.api_gateway.http_context import HttpContext
from coremachine.services.api_gateway.http_deps import QueryCheck


def workers_router(ctx: HttpContext) -> APIRouter:
    router = APIRouter(prefix="/api/workers", tags=["workers"])
    reader = Depends(ctx.needs(Role.READER))

    @router.get("", dependencies=[reader, QueryCheck])
    async def list_workers(
        include_gone_seconds: Annotated[
            int,
            Query(
                ge=0,
                le=30 * 86400,
                description="also workers stopped or lost within this many seconds (0: an hour)",
            ),
        ] = 0,
    ) -> dict[str, Any]:
        """Workers by id: state `live`, `lost` (stopped heartbeating: its leases are
        reclaimed as they expire) or `stopped`; queues, task types, load, version."""
        workers = await ctx.backends.workers(include_gone_seconds)
        return {"workers": [worker_to_json(w) for w in workers]}

    return router
