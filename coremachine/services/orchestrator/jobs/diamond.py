"""diamond: single -> fan-out over its results -> fan-in.

Stage 1 splits a range into items, stage 2 squares each item (one task per
item), stage 3 sums the squares in one fan-in task.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coremachine.services.orchestrator.registry import (
    AggregateContext,
    FanIn,
    JobType,
    PerItem,
    PlanContext,
    Single,
    StageSpec,
)


class DiamondParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(10, ge=0, le=100_000, description="numbers 1..count to square and sum")


def _items(ctx: PlanContext) -> list[Any]:
    [split] = ctx.previous_completed()
    return list(split.result["items"])


def _aggregate(ctx: AggregateContext) -> dict[str, Any]:
    [total] = ctx.final_results
    return {
        "job_type": ctx.job_type,
        "sum_of_squares": total.result["sum"],
        "stages": dict(ctx.stage_summaries),
    }


def diamond() -> JobType:
    return JobType(
        name="diamond",
        description="Diamond: one split task, one task per item, one fan-in sum.",
        parameters=DiamondParameters,
        stages=(
            StageSpec(
                "split", "diamond_split", Single(lambda ctx: {"count": ctx.parameters["count"]})
            ),
            StageSpec(
                "square", "diamond_square", PerItem(_items, lambda ctx, i, item: {"value": item})
            ),
            StageSpec("sum", "diamond_sum", FanIn()),
        ),
        aggregate=_aggregate,
    )
