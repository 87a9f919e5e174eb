"""diamond: single -> fan-out over its results -> fan-in.

Stage 1 splits a range into items, stage 2 squares each item (one task per
item), stage 3 sums the squares in one fan-in task.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coremachine.app import (
    AggregateContext,
    App,
    FanIn,
    PerItem,
    PlanContext,
    Single,
    Stage,
    TaskContext,
)


class DiamondParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(10, ge=0, le=100_000, description="numbers 1..count to square and sum")


def split(params: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(range(1, int(params["count"]) + 1))}


def square(params: dict[str, Any]) -> dict[str, Any]:
    value = int(params["item"])
    return {"value": value, "square": value * value}


def total(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    squares = [p.result["square"] for p in ctx.previous_results if p.status == "completed"]
    return {"sum": sum(squares), "count": len(squares)}


def _items(ctx: PlanContext) -> list[Any]:
    [listing] = ctx.previous_completed()
    return list(listing.result["items"])


def _aggregate(ctx: AggregateContext) -> dict[str, Any]:
    [result] = ctx.final_results
    return {
        "job_type": ctx.job_type,
        "sum_of_squares": result.result["sum"],
        "stages": dict(ctx.stage_summaries),
    }


def register(app: App) -> None:
    app.job(
        "diamond",
        description="Diamond: one split task, one task per item, one fan-in sum.",
        parameters=DiamondParameters,
        stages=[
            Stage(
                "split",
                app.task("diamond_split")(split),
                Single(lambda ctx: {"count": ctx.parameters["count"]}),
            ),
            Stage("square", app.task("diamond_square")(square), PerItem(_items)),
            Stage("sum", app.task("diamond_sum")(total), FanIn()),
        ],
        aggregate=_aggregate,
    )
