"""Handler of summarize_container: one pass over the listing, a summary out."""

from __future__ import annotations

import time
from typing import Any

from coremachine.services.worker.context import TaskContext
from coremachine.services.worker.handlers.container_listing import (
    BlobFilter,
    Listing,
    matching_blobs,
)
from coremachine.services.worker.handlers.container_stats import ContainerStats


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
