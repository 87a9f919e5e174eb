"""Job types of the flow-control end-to-end tests (loaded by COREMACHINE_APPS).

Two job types share the concurrency key of a tenant (the limit spans job
types); one task type is rate limited by a named limit; `sleepy` runs long
enough for a schedule's runs to overlap.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field

from coremachine.app import App, ConcurrencyKey, FromParameter, RateLimit, Single, Stage

app = App("flowtest")


class TenantWork(BaseModel):
    tenant: str
    n: int = Field(10, ge=1, le=10_000)
    seconds: float = Field(0.2, ge=0, le=60)
    run: str = ""


class Rated(BaseModel):
    n: int = Field(10, ge=1, le=10_000)
    run: str = ""


class Sleepy(BaseModel):
    seconds: float = Field(1.0, ge=0, le=600)


@app.task
async def tenant_task(params: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(params["seconds"])
    return {}


@app.task(rate_limit=RateLimit(per_second=20, burst=20, name="partner-api"))
async def partner_call(params: dict[str, Any]) -> dict[str, Any]:
    return {}


@app.task
async def nap(params: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(params["seconds"])
    return {}


TENANT_KEY = ConcurrencyKey("tenant:{tenant}", limit=5)

for name in ("tenant_ingest", "tenant_export"):
    app.job(
        name,
        parameters=TenantWork,
        concurrency=[TENANT_KEY],
        stages=[
            Stage(
                "work",
                tenant_task,
                FromParameter("n", lambda ctx, i: {"seconds": ctx.parameters["seconds"]}),
            )
        ],
    )

app.job("rated", parameters=Rated, stages=[Stage("calls", partner_call, FromParameter("n"))])

app.job(
    "sleepy",
    parameters=Sleepy,
    stages=[Stage("nap", nap, Single(lambda ctx: {"seconds": ctx.parameters["seconds"]}))],
)

# At most one of these runs at a time; the others wait, queued, in order.
app.job(
    "one_at_a_time",
    parameters=Sleepy,
    max_running=1,
    stages=[Stage("nap", nap, Single(lambda ctx: {"seconds": ctx.parameters["seconds"]}))],
)
