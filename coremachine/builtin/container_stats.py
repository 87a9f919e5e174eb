"""The summary both container jobs report: counts, sizes by extension, largest blobs."""

from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import dataclass, field
from typing import Any

from coremachine.builtin.container_listing import extension_of, size_mb

LARGEST = 10


@dataclass(slots=True)
class ContainerStats:
    """Accumulates blobs one at a time, in constant memory apart from the extensions seen."""

    file_count: int = 0
    total_size_bytes: int = 0
    by_extension: dict[str, dict[str, int]] = field(default_factory=dict)
    oldest: dt.datetime | None = None
    newest: dt.datetime | None = None
    # A min-heap of (size, name): the LARGEST biggest so far (equal sizes: later name wins).
    _largest: list[tuple[int, str]] = field(default_factory=list)

    def add(self, name: str, size: int, last_modified: dt.datetime | None) -> None:
        self.file_count += 1
        self.total_size_bytes += size
        bucket = self.by_extension.setdefault(extension_of(name), {"count": 0, "size_bytes": 0})
        bucket["count"] += 1
        bucket["size_bytes"] += size
        if last_modified is not None:
            self.oldest = last_modified if self.oldest is None else min(self.oldest, last_modified)
            self.newest = last_modified if self.newest is None else max(self.newest, last_modified)
        entry = (size, name)
        if len(self._largest) < LARGEST:
            heapq.heappush(self._largest, entry)
        elif entry > self._largest[0]:
            heapq.heapreplace(self._largest, entry)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file_count": self.file_count,
            "total_size_bytes": self.total_size_bytes,
            "total_size_mb": size_mb(self.total_size_bytes),
            "by_extension": {
                extension: {**bucket, "size_mb": size_mb(bucket["size_bytes"])}
                for extension, bucket in sorted(self.by_extension.items())
            },
            "largest": [
                {"name": name, "size_bytes": size, "size_mb": size_mb(size)}
                for size, name in sorted(self._largest, key=lambda e: (-e[0], e[1]))
            ],
            "oldest_modified": self.oldest.isoformat() if self.oldest else None,
            "newest_modified": self.newest.isoformat() if self.newest else None,
        }
