"""Which blobs of a container the container jobs look at: the filters and the listing.

The parameters were validated by the orchestrator (builtin/
container_params.py); here they are applied to each listed blob. Sizes are in
MiB; dates are compared as timezone-aware instants.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from coremachine.app import PermanentError
from coremachine.shared.blobstore import BlobInfo, BlobStore, ContainerNotFound

MIB = 1024 * 1024
NO_EXTENSION = "(none)"


def extension_of(name: str) -> str:
    """The blob's extension in lower case ('.tif'), or NO_EXTENSION."""
    return PurePosixPath(name).suffix.lower() or NO_EXTENSION


def size_mb(size: int) -> float:
    return round(size / MIB, 6)


@dataclass(frozen=True, slots=True)
class BlobFilter:
    """The filter parameters of a container job; `matches` applies all but the prefix."""

    prefix: str | None = None
    extensions: frozenset[str] | None = None
    min_bytes: float | None = None
    max_bytes: float | None = None
    modified_after: dt.datetime | None = None
    modified_before: dt.datetime | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BlobFilter:
        extensions = params.get("extensions")
        return cls(
            prefix=params.get("prefix") or None,
            extensions=frozenset(e.lower() for e in extensions) if extensions else None,
            min_bytes=_mib(params.get("min_size_mb")),
            max_bytes=_mib(params.get("max_size_mb")),
            modified_after=_instant(params.get("modified_after")),
            modified_before=_instant(params.get("modified_before")),
        )

    def matches(self, blob: BlobInfo) -> bool:
        # The prefix is applied by the store's listing (server-side on Azure).
        if self.extensions is not None and extension_of(blob.name) not in self.extensions:
            return False
        if self.min_bytes is not None and blob.size < self.min_bytes:
            return False
        if self.max_bytes is not None and blob.size > self.max_bytes:
            return False
        if self.modified_after is not None and not blob.last_modified > self.modified_after:
            return False
        return self.modified_before is None or blob.last_modified < self.modified_before

    def describe(self) -> dict[str, Any]:
        """The filters in force, for the job's result (None values left out)."""
        described = {
            "prefix": self.prefix,
            "extensions": sorted(self.extensions) if self.extensions is not None else None,
            "min_size_mb": self.min_bytes / MIB if self.min_bytes is not None else None,
            "max_size_mb": self.max_bytes / MIB if self.max_bytes is not None else None,
            "modified_after": _iso(self.modified_after),
            "modified_before": _iso(self.modified_before),
        }
        return {k: v for k, v in described.items() if v is not None}


@dataclass(slots=True)
class Listing:
    """Counts of one pass over a container, filled in while `matching_blobs` runs."""

    scanned: int = 0
    matched: int = 0
    truncated: bool = False


async def matching_blobs(
    store: BlobStore, container: str, blob_filter: BlobFilter, limit: int | None, listing: Listing
) -> AsyncIterator[BlobInfo]:
    """Yields the container's blobs that pass the filter, in name order, at most limit.

    Streams, so summarizing a million-blob container holds no list of them;
    `listing.truncated` tells whether more blobs matched than the limit let through.
    """
    try:
        async for blob in store.list_blobs(container, prefix=blob_filter.prefix):
            listing.scanned += 1
            if not blob_filter.matches(blob):
                continue
            if limit is not None and listing.matched >= limit:
                listing.truncated = True
                return
            listing.matched += 1
            yield blob
    except ContainerNotFound as exc:
        # Retrying cannot create the container: fail the task (and the job) at once.
        raise PermanentError(f"container {container!r} does not exist") from exc


def _mib(value: Any) -> float | None:
    return float(value) * MIB if value is not None else None


def _instant(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    instant = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
