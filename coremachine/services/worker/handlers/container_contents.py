"""Handlers of list_container_contents: list, analyze one blob, summarize (fan-in)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from coremachine.services.worker.context import TaskContext
from coremachine.services.worker.handlers.container_listing import (
    BlobFilter,
    Listing,
    extension_of,
    matching_blobs,
    size_mb,
)
from coremachine.services.worker.handlers.container_stats import ContainerStats
from coremachine.shared.blobstore import BlobNotFound, ContainerNotFound


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
    previous = await ctx.resolve_previous_results(params.get("previous_results"))
    stats = ContainerStats()
    missing: list[str] = []
    failed = 0
    for entry in previous:
        result = entry.get("result")
        if entry.get("status") != "completed" or not isinstance(result, dict):
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
