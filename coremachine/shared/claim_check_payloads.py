"""JSON task payloads that may be claim-checked, as the orchestrator and worker see them.

`load` returns the real value of a stored payload (fetching a reference);
`wrap` stores a large encoded payload and returns its reference. Keys are
derived from the task, so re-planning or retrying rewrites the same blob.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from coremachine.shared.blobstore import BlobStore
from coremachine.shared.blobstores import open_blob_store
from coremachine.shared.claim_check import (
    DEFAULT_CONTAINER,
    DEFAULT_THRESHOLD_BYTES,
    ClaimCheck,
    is_reference,
)
from coremachine.shared.settings import CommonSettings

P = TypeVar("P", bound="JsonPayloads")
T = TypeVar("T")
R = TypeVar("R")

# Blob round trips in flight at once: enough to hide latency, few enough not to
# open hundreds of connections.
CONCURRENCY = 32


def payload_key(job_id: str, stage: int, task_index: int, kind: str) -> str:
    """Blob key of a task's `parameters` or `result`."""
    return f"job/{job_id}/stage/{stage}/task/{task_index}/{kind}"


class JsonPayloads:
    """Loads payloads (fetching references) and wraps large ones (storing blobs)."""

    @classmethod
    def from_settings(cls: type[P], settings: CommonSettings) -> tuple[P, BlobStore]:
        """The configured blob store (BLOB_STORE, ...) and payloads on it; close the store."""
        store = open_blob_store(
            settings.blob_store,
            local_root=settings.blob_local_root,
            connection_string=settings.azure_storage_connection_string,
            account_url=settings.azure_storage_account_url,
        )
        payloads = cls(
            store,
            container=settings.claim_check_container,
            threshold_bytes=settings.claim_check_threshold_bytes,
        )
        return payloads, store

    def __init__(
        self,
        store: BlobStore,
        *,
        container: str = DEFAULT_CONTAINER,
        threshold_bytes: int = DEFAULT_THRESHOLD_BYTES,
    ) -> None:
        self.claim_check = ClaimCheck(store, container, threshold_bytes)
        self.threshold = threshold_bytes

    async def load(self, raw: bytes) -> Any:
        """The JSON value of a stored payload, fetched first if it is a reference; None if empty."""
        if not raw:
            return None
        return json.loads(await self.claim_check.unwrap(raw))

    async def load_many(self, raws: Sequence[bytes]) -> list[Any]:
        """`load` for each payload, in order, fetching references concurrently."""
        values = [None if not raw or is_reference(raw) else json.loads(raw) for raw in raws]
        # Only references cost a round trip: a 100,000-task stage of small
        # results is decoded without scheduling a coroutine per result.
        references = [i for i, raw in enumerate(raws) if is_reference(raw)]
        fetched = await map_bounded(self.load, [raws[i] for i in references])
        for i, value in zip(references, fetched, strict=True):
            values[i] = value
        return values

    async def wrap(self, encoded: bytes, key: str) -> bytes:
        """The encoded payload, or a reference to the blob it was stored as."""
        return await self.claim_check.wrap(encoded, key)


async def map_bounded(function: Callable[[T], Awaitable[R]], items: Sequence[T]) -> list[R]:
    """function(item) for every item, at most CONCURRENCY at a time, in order."""
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> R:
        async with limit:
            return await function(item)

    return list(await asyncio.gather(*(one(item) for item in items)))
