"""/api/schedules: create, list, read, pause, resume, delete, trigger and firings.

A schedule fires a job type with fixed parameters on a cron expression (in
a time zone) or an interval; the state service hands each tick to one
orchestrator, so every tick is one job whatever the number of replicas.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coremachine.common.v1 import common_pb2
from coremachine.services.api_gateway.auth import Role
from coremachine.services.api_gateway.convert import (
    firing_to_json,
    job_to_json,
    schedule_to_json,
)
from coremachine.services.api_gateway.http_context import HttpContext
from coremachine.services.api_gateway.http_deps import QueryCheck, clamp_limit
from coremachine.services.api_gateway.params import JOB_TYPE_PATTERN, check_parameters
from coremachine.shared.domain.priorities import DEFAULT_PRIORITY
from coremachine.shared.domain.schedules import SCHEDULE_NAME_PATTERN
from coremachine.shared.errors import InvalidArgument

NamePath = Annotated[str, Path(pattern=SCHEDULE_NAME_PATTERN, examples=["nightly-report"])]


class NewSchedule(BaseModel):
    """A schedule to create: cron (5 fields, or 6 with seconds first) or interval_seconds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=SCHEDULE_NAME_PATTERN, examples=["nightly-report"])
    job_type: str = Field(pattern=JOB_TYPE_PATTERN, examples=["hello_world"])
    parameters: dict[str, Any] = Field(default_factory=dict)
    cron: str | None = Field(None, max_length=200, examples=["0 3 * * *"])
    timezone: str = Field("UTC", max_length=100, examples=["Europe/Paris"])
    interval_seconds: float | None = Field(None, ge=1)
    catch_up: Literal["skip", "run_once", "run_each"] = "skip"
    catch_up_limit: int = Field(10, ge=1, le=1000)
    grace_seconds: float = Field(60.0, ge=0)
    overlap: Literal["skip", "allow", "cancel_previous"] = "skip"
    priority: int = Field(DEFAULT_PRIORITY, ge=0, le=9)
    paused: bool = False
    description: str = Field("", max_length=1000)


def _parse(body: bytes) -> NewSchedule:
    try:
        return NewSchedule.model_validate_json(body or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidArgument(f"{field}: {first['msg']}", field) from None


def schedules_router(ctx: HttpContext) -> APIRouter:
    router = APIRouter(prefix="/api/schedules", tags=["schedules"])
    reader = Depends(ctx.needs(Role.READER))
    submitter = Depends(ctx.needs(Role.SUBMITTER))

    @router.post(
        "",
        status_code=201,
        dependencies=[submitter, QueryCheck],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": NewSchedule.model_json_schema()}},
            }
        },
    )
    async def create_schedule(request: Request) -> JSONResponse:
        """Creates a schedule (409 if the name exists); its parameters are validated now."""
        new = _parse(await request.body())
        check_parameters(new.parameters, ctx.parameter_limits, "parameters")
        created = await ctx.backends.create_schedule(
            common_pb2.Schedule(
                name=new.name,
                job_type=new.job_type,
                parameters_json=json.dumps(new.parameters).encode(),
                priority=new.priority,
                cron=new.cron or "",
                timezone=new.timezone,
                interval_seconds=new.interval_seconds or 0.0,
                catch_up=new.catch_up,
                catch_up_limit=new.catch_up_limit,
                grace_seconds=new.grace_seconds,
                overlap=new.overlap,
                paused=new.paused,
                description=new.description,
            )
        )
        return JSONResponse(status_code=201, content=schedule_to_json(created))

    @router.get("", dependencies=[reader, QueryCheck])
    async def list_schedules(
        limit: Annotated[int, Query(ge=1)] = 100,
        page_token: Annotated[str, Query(max_length=200)] = "",
    ) -> dict[str, Any]:
        """The schedules by name (cursor-paginated: pass `next_page_token` back)."""
        response = await ctx.backends.list_schedules(
            clamp_limit(limit, ctx.max_list_limit), page_token
        )
        return {
            "schedules": [schedule_to_json(s) for s in response.schedules],
            "next_page_token": response.next_page_token or None,
        }

    @router.get("/{name}", dependencies=[reader, QueryCheck])
    async def get_schedule(name: NamePath) -> dict[str, Any]:
        """One schedule, with its next tick."""
        return schedule_to_json(await ctx.backends.get_schedule(name))

    @router.post("/{name}/pause", dependencies=[submitter, QueryCheck])
    async def pause_schedule(name: NamePath) -> dict[str, Any]:
        """Pauses a schedule: no tick fires until it is resumed."""
        return schedule_to_json(await ctx.backends.set_schedule_paused(name, True))

    @router.post("/{name}/resume", dependencies=[submitter, QueryCheck])
    async def resume_schedule(name: NamePath) -> dict[str, Any]:
        """Resumes a schedule from its next tick (ticks while paused are not caught up)."""
        return schedule_to_json(await ctx.backends.set_schedule_paused(name, False))

    @router.delete("/{name}", dependencies=[submitter, QueryCheck])
    async def delete_schedule(name: NamePath) -> dict[str, Any]:
        """Deletes a schedule and its firing record; the jobs it fired stay."""
        return {"deleted": await ctx.backends.delete_schedule(name)}

    @router.post("/{name}/trigger", dependencies=[submitter, QueryCheck])
    async def trigger_schedule(name: NamePath) -> dict[str, Any]:
        """Fires the schedule now (recorded as a manual firing) and returns its job."""
        response = await ctx.backends.trigger_schedule(name)
        return {
            "firing": firing_to_json(response.firing),
            "job": job_to_json(response.job) if response.HasField("job") else None,
        }

    @router.get("/{name}/firings", dependencies=[reader, QueryCheck])
    async def schedule_firings(
        name: NamePath, limit: Annotated[int, Query(ge=1)] = 100
    ) -> dict[str, Any]:
        """The schedule's firings and missed ticks, newest first, with their jobs."""
        firings = await ctx.backends.schedule_firings(name, clamp_limit(limit, ctx.max_list_limit))
        return {"firings": [firing_to_json(f) for f in firings]}

    return router
