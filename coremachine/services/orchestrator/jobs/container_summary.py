"""summarize_container: one task reads a container's listing and summarizes it.

Counts, total size, sizes by extension and the largest blobs of the blobs that
pass the filters (see `container_params`), read through the worker's blob
store: the local directory or Azure Blob Storage alike.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from coremachine.services.orchestrator.jobs.container_params import ContainerFilters
from coremachine.services.orchestrator.registry import AggregateContext, JobType, Single, StageSpec
from coremachine.shared.domain.retry import RetryPolicy


class SummarizeContainerParameters(ContainerFilters):
    file_limit: int | None = Field(
        None, ge=1, le=10_000_000, description="summarize at most this many matching blobs"
    )


def _aggregate(ctx: AggregateContext) -> dict[str, Any]:
    [summary] = ctx.final_results
    return {"job_type": ctx.job_type, **summary.result}


def summarize_container(retry: RetryPolicy) -> JobType:
    return JobType(
        name="summarize_container",
        description="Summarizes a blob container: counts, sizes by extension, largest blobs.",
        parameters=SummarizeContainerParameters,
        stages=(
            StageSpec(
                "summarize",
                "container_summary_task",
                Single(lambda ctx: dict(ctx.parameters)),
                retry=retry,
            ),
        ),
        aggregate=_aggregate,
    )
