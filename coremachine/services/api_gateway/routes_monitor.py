"""/api/health (open, for probes), /api/queues, and /api/monitor/poison (dead letters:
inspect, replay, fail)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from coremachine.services.api_gateway.auth import Principal, Role
from coremachine.services.api_gateway.convert import dead_letter_to_json, queue_to_json
from coremachine.services.api_gateway.http_context import HttpContext
from coremachine.services.api_gateway.http_deps import QueryCheck, clamp_limit
from coremachine.shared.errors import CoreMachineError, InvalidArgument

_OK = "ok"


class PoisonAction(BaseModel):
    """What to do with some dead letters of one queue."""

    model_config = ConfigDict(extra="forbid")

    queue: str = Field(max_length=100, examples=["tasks"])
    # Both brokers number dead letters with int64 sequence numbers.
    sequences: list[Annotated[str, Field(pattern=r"^[0-9]{1,18}$")]] = Field(
        min_length=1, max_length=1000, description="`sequence` values from GET"
    )
    action: Literal["replay", "fail"]
    confirm: bool = Field(description="must be true", json_schema_extra={"const": True})
    reason: str = Field("", max_length=500, description="recorded in the failed jobs' error")


def _parse_action(body: bytes) -> PoisonAction:
    try:
        return PoisonAction.model_validate_json(body or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidArgument(f"{field}: {first['msg']}", field) from None


def monitor_router(ctx: HttpContext, queues: list[str]) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["operations"])
    reader = Depends(ctx.needs(Role.READER))
    admin = Depends(ctx.needs(Role.ADMIN))

    def check_queue(queue: str) -> str:
        if queue not in queues:
            raise InvalidArgument(f"queue: must be one of {', '.join(queues)}", "queue")
        return queue

    @router.get("/health", dependencies=[QueryCheck])
    async def health() -> JSONResponse:
        """200 when the services, database and broker are all fine, else 503. No auth."""
        services, deps = await asyncio.gather(
            ctx.backends.health(), ctx.backends.dependencies(), return_exceptions=True
        )
        if isinstance(services, BaseException):
            raise services
        components: dict[str, Any] = {"services": services}
        if isinstance(deps, CoreMachineError):
            unknown = f"unknown: state service: {deps}"
            components |= {"database": unknown, "broker": unknown, "queues": {}}
        elif isinstance(deps, BaseException):
            unknown = f"unknown: state service: {type(deps).__name__}"
            components |= {"database": unknown, "broker": unknown, "queues": {}}
        else:
            components |= {
                "database": deps.database,
                "broker": deps.broker,
                "queues": {
                    q: {
                        "depth": deps.queue_depths.get(q, 0),
                        "dead_letters": deps.dead_letters.get(q, 0),
                    }
                    for q in sorted({*deps.queue_depths, *deps.dead_letters})
                },
            }
        healthy = (
            all(v == "serving" for v in services.values())
            and components["database"] == _OK
            and components["broker"] == _OK
        )
        return JSONResponse(
            status_code=200 if healthy else 503,
            content={"status": "healthy" if healthy else "unhealthy", "components": components},
            headers={"Cache-Control": "no-cache"},
        )

    @router.get("/queues", dependencies=[reader, QueryCheck])
    async def list_queues() -> dict[str, Any]:
        """Each queue's depth (active messages), dead letters, and the age in seconds of
        its oldest message ready for delivery (`null`: none waits)."""
        return {"queues": [queue_to_json(q) for q in await ctx.backends.queues()]}

    @router.get("/monitor/poison", dependencies=[reader, QueryCheck])
    async def list_poison(
        # A default rather than Annotated: the enum comes from this closure,
        # which string annotations (PEP 563) cannot see.
        queue: str | None = Query(
            None, max_length=100, description="default: all", json_schema_extra={"enum": queues}
        ),
        limit: Annotated[int, Query(ge=1, description="per queue; clamped")] = 100,
    ) -> dict[str, Any]:
        """Dead-lettered messages with their reason, delivery count, job and task ids."""
        wanted = [check_queue(queue)] if queue else list(queues)
        limit = clamp_limit(limit, ctx.max_list_limit)
        letters = await asyncio.gather(*(ctx.backends.dead_letters(q, limit) for q in wanted))
        return {
            "queues": {
                q: {"count": len(found), "messages": [dead_letter_to_json(m) for m in found]}
                for q, found in zip(wanted, letters, strict=True)
            }
        }

    body_schema = PoisonAction.model_json_schema()
    body_schema["properties"]["queue"]["enum"] = list(queues)

    @router.post(
        "/monitor/poison",
        dependencies=[QueryCheck],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        },
    )
    async def act_on_poison(request: Request, principal: Principal = admin) -> dict[str, Any]:
        """Replays dead letters to their queue, or fails their jobs and purges them (admin).

        Refused unless `confirm` is true.
        """
        # The body is parsed here, after the role check, so that a caller
        # without a key cannot probe the body's validation.
        action = _parse_action(await request.body())
        check_queue(action.queue)
        if not action.confirm:
            raise InvalidArgument("confirm: must be true to act on dead letters", "confirm")
        if action.action == "replay":
            replayed = await ctx.backends.replay_dead_letters(action.queue, action.sequences)
            return {"action": "replay", "queue": action.queue, "replayed": replayed}
        reason = action.reason or f"failed by {principal.name} through the poison monitor"
        response = await ctx.backends.fail_dead_letters(action.queue, action.sequences, reason)
        return {
            "action": "fail",
            "queue": action.queue,
            "jobs_failed": response.jobs_failed,
            "purged": response.purged,
        }

    return router
