"""In-memory blob store for unit tests: same contract, no I/O."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace

from coremachine.shared.blobstore import (
    DEFAULT_CONTENT_TYPE,
    BlobAlreadyExists,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    ContainerNotFound,
    validate_blob_name,
    validate_container_name,
    validate_limit,
    validate_metadata,
)


class MemoryBlobStore(BlobStore):
    """Blobs in a dict of dicts; every method completes without awaiting anything."""

    def __init__(self) -> None:
        self._containers: dict[str, dict[str, tuple[BlobInfo, bytes]]] = {}
        self._etags = itertools.count(1)

    def _container(self, container: str) -> dict[str, tuple[BlobInfo, bytes]]:
        validate_container_name(container)
        try:
            return self._containers[container]
        except KeyError:
            raise ContainerNotFound(f"container {container!r} does not exist") from None

    def _entry(self, container: str, name: str) -> tuple[BlobInfo, bytes]:
        blobs = self._container(container)
        try:
            return blobs[validate_blob_name(name)]
        except KeyError:
            raise BlobNotFound(f"blob {name!r} not found in {container!r}") from None

    async def put(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        overwrite: bool = True,
    ) -> BlobInfo:
        """Stores data under name; raises BlobAlreadyExists if overwrite is False and it exists."""
        blobs = self._container(container)
        validate_blob_name(name)
        checked_metadata = validate_metadata(metadata)
        if not overwrite and name in blobs:
            raise BlobAlreadyExists(f"blob {name!r} already exists in {container!r}")
        info = BlobInfo(
            container=container,
            name=name,
            size=len(data),
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            last_modified=dt.datetime.now(dt.UTC),
            etag=f'"{next(self._etags)}"',
            metadata=checked_metadata,
        )
        blobs[name] = (info, bytes(data))
        return info

    async def get(self, container: str, name: str) -> bytes:
        """Returns the blob's content; raises BlobNotFound or ContainerNotFound."""
        return self._entry(container, name)[1]

    async def properties(self, container: str, name: str) -> BlobInfo:
        """Returns the blob's properties; raises BlobNotFound or ContainerNotFound."""
        info = self._entry(container, name)[0]
        return replace(info, metadata=dict(info.metadata))

    async def exists(self, container: str, name: str) -> bool:
        """Whether the blob exists (False also when the container does not)."""
        validate_container_name(container)
        validate_blob_name(name)
        return name in self._containers.get(container, {})

    async def delete(self, container: str, name: str) -> bool:
        """Deletes the blob; returns False if there was nothing to delete."""
        blobs = self._container(container)
        return blobs.pop(validate_blob_name(name), None) is not None

    async def list_blobs(
        self, container: str, *, prefix: str | None = None, limit: int | None = None
    ) -> AsyncIterator[BlobInfo]:
        """Yields the container's blobs in name order; raises ContainerNotFound."""
        blobs = self._container(container)
        validate_limit(limit)
        # Snapshot first, so a caller may delete blobs while iterating.
        names = sorted(n for n in blobs if prefix is None or n.startswith(prefix))
        for name in names[:limit] if limit is not None else names:
            if name in blobs:
                yield blobs[name][0]

    async def ensure_container(self, container: str) -> None:
        """Creates the container if it does not exist yet."""
        self._containers.setdefault(validate_container_name(container), {})

    async def close(self) -> None:
        """Nothing to release."""
