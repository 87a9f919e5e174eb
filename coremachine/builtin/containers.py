"""The blob-storage inventory jobs, read through the worker's blob store
(the local directory or Azure Blob Storage alike).

summarize_container: one task reads a container's listing and summarizes it
(counts, total size, sizes by extension, the largest blobs).

list_container_contents: the reference fan-out. Stage 1 lists the blobs that
pass the filters (at most `file_limit`), stage 2 collects each blob's
properties in its own task, stage 3 is one fan-in task that summarizes them.
The job's result is that summary, not the inventory: the per-blob
properties stay in the stage-2 task results.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from pydantic import Field

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
from coremachine.builtin.container_listing import (
    BlobFilter,
    Listing,
    extension_of,
    matching_blobs,
    size_mb,
)
from coremachine.builtin.container_params import ContainerFilters
from coremachine.builtin.container_stats import ContainerStats
from coremachine.shared.blobstore import BlobNotFound, ContainerNotFound

MAX_FILE_LIMIT = 10_000


class SummarizeContainerParameters(ContainerFilters):
    file_limit: int | None = Field(
        None, ge=1, le=10_000_000, description="summarize at most this many matching blobs"
    )


class ListContainerContentsParameters(ContainerFilters):
    file_limit: int = Field(
        1000, ge=1, le=MAX_FILE_LIMIT, description="analyze at most this many matching blobs"
    )


# -- handlers ------------------------------------------------------------------


async def summarize(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    started = time.monotonic()
    container = str(params["container_name"])
    blob_filter = BlobFilter.from_params(params)
    limit = params.get("file_limit")
    listing = Listing()
    stats = ContainerStats()
    async for blob in matching_blobs(ctx.blobs, container, blob_filter, limit, listing):
        stats.add(blob.name, blob.size, blob.last_modified)
    return {
        "container_name": container,
        "filters": blob_filter.describe(),
        **stats.to_dict(),
        "scanned": listing.scanned,
        "truncated": listing.truncated,
        "duration_seconds": round(time.monotonic() - started, 3),
    }


async def list_blobs(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Stage 1: the names of the blobs that pass the filters, at most file_limit."""
    container = str(params["container_name"])
    blob_filter = BlobFilter.from_params(params)
    listing = Listing()
    names = [
        blob.name
        async for blob in matching_blobs(
            ctx.blobs, container, blob_filter, int(params["file_limit"]), listing
        )
    ]
    return {
        "container_name": container,
        "filters": blob_filter.describe(),
        "blob_names": names,
        "total_count": len(names),
        "scanned": listing.scanned,
        "truncated": listing.truncated,
    }


async def analyze_blob(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Stage 2: one blob's properties (a blob deleted since the listing is reported, not failed)."""
    container, name = str(params["container_name"]), str(params["blob_name"])
    try:
        info = await ctx.blobs.properties(container, name)
    except (BlobNotFound, ContainerNotFound):
        return {"blob_name": name, "found": False}
    return {
        "blob_name": name,
        "blob_path": f"{container}/{name}",
        "found": True,
        "size_bytes": info.size,
        "size_mb": size_mb(info.size),
        "file_extension": extension_of(name),
        "content_type": info.content_type,
        "last_modified": info.last_modified.isoformat(),
        "etag": info.etag,
        "metadata": dict(info.metadata),
    }


async def summarize_inventory(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """Stage 3 (fan-in): the summary of every analyzed blob."""
    previous = ctx.previous_results
    stats = ContainerStats()
    missing: list[str] = []
    failed = 0
    for entry in previous:
        result = entry.result
        if entry.status != "completed" or not isinstance(result, dict):
            failed += 1
        elif not result.get("found"):
            missing.append(str(result.get("blob_name")))
        else:
            stats.add(
                result["blob_name"],
                int(result["size_bytes"]),
                _parse_instant(result.get("last_modified")),
            )
    return {
        "container_name": params.get("container_name"),
        "analyzed": len(previous),
        **stats.to_dict(),
        "missing": len(missing),
        "missing_examples": missing[:10],
        "failed": failed,
    }


def _parse_instant(value: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else None


# -- planning and aggregation --------------------------------------------------


def _blob_names(ctx: PlanContext) -> list[str]:
    [listing] = ctx.previous_completed()
    return list(listing.result["blob_names"])


def _analyze(ctx: PlanContext, index: int, blob_name: str) -> dict[str, Any]:
    return {"container_name": ctx.parameters["container_name"], "blob_name": blob_name}


def _summarize(ctx: PlanContext) -> dict[str, Any]:
    return {"container_name": ctx.parameters["container_name"]}


def _only_result(ctx: AggregateContext) -> dict[str, Any]:
    [summary] = ctx.final_results
    return {"job_type": ctx.job_type, **summary.result}


def _inventory(ctx: AggregateContext) -> dict[str, Any]:
    return {**_only_result(ctx), "stages": dict(ctx.stage_summaries)}


def register(app: App) -> None:
    app.job(
        "summarize_container",
        description="Summarizes a blob container: counts, sizes by extension, largest blobs.",
        parameters=SummarizeContainerParameters,
        stages=[
            Stage(
                "summarize",
                app.task("container_summary_task")(summarize),
                Single(lambda ctx: dict(ctx.parameters)),
            )
        ],
        aggregate=_only_result,
    )
    app.job(
        "list_container_contents",
        description="Lists a blob container, analyzes each blob in its own task, summarizes.",
        parameters=ListContainerContentsParameters,
        stages=[
            Stage(
                "list",
                app.task("list_container_blobs")(list_blobs),
                Single(lambda ctx: dict(ctx.parameters)),
            ),
            Stage(
                "analyze",
                app.task("analyze_single_blob")(analyze_blob),
                PerItem(_blob_names, _analyze),
            ),
            Stage(
                "summarize",
                app.task("summarize_blob_inventory")(summarize_inventory),
                FanIn(_summarize),
            ),
        ],
        aggregate=_inventory,
    )
