"""list_container_contents: list a container, analyze each blob, summarize (the reference fan-out).

Stage 1 lists the blobs that pass the filters (at most `file_limit`), stage 2
collects each blob's properties in its own task, stage 3 is one fan-in task
that summarizes them. The job's result is that summary, not the inventory:
the per-blob properties stay in the stage-2 task results.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from coremachine.services.orchestrator.jobs.container_params import ContainerFilters
from coremachine.services.orchestrator.registry import (
    AggregateContext,
    FanIn,
    JobType,
    PerItem,
    PlanContext,
    Single,
    StageSpec,
)
from coremachine.shared.domain.retry import RetryPolicy

MAX_FILE_LIMIT = 10_000


class ListContainerContentsParameters(ContainerFilters):
    file_limit: int = Field(
        1000, ge=1, le=MAX_FILE_LIMIT, description="analyze at most this many matching blobs"
    )


def _blob_names(ctx: PlanContext) -> list[str]:
    [listing] = ctx.previous_completed()
    return list(listing.result["blob_names"])


def _analyze(ctx: PlanContext, index: int, blob_name: str) -> dict[str, Any]:
    return {"container_name": ctx.parameters["container_name"], "blob_name": blob_name}


def _summarize(ctx: PlanContext) -> dict[str, Any]:
    return {"container_name": ctx.parameters["container_name"]}


def _aggregate(ctx: AggregateContext) -> dict[str, Any]:
    [summary] = ctx.final_results
    return {"job_type": ctx.job_type, **summary.result, "stages": dict(ctx.stage_summaries)}


def list_container_contents(retry: RetryPolicy) -> JobType:
    return JobType(
        name="list_container_contents",
        description="Lists a blob container, analyzes each blob in its own task, summarizes.",
        parameters=ListContainerContentsParameters,
        stages=(
            StageSpec(
                "list",
                "list_container_blobs",
                Single(lambda ctx: dict(ctx.parameters)),
                retry=retry,
            ),
            StageSpec(
                "analyze", "analyze_single_blob", PerItem(_blob_names, _analyze), retry=retry
            ),
            StageSpec("summarize", "summarize_blob_inventory", FanIn(_summarize), retry=retry),
        ),
        aggregate=_aggregate,
    )
