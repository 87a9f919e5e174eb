"""Claim check of task payloads on the orchestrator, so job types only see real values.

Planned task parameters larger than the threshold are stored as blobs and the
task carries a reference (the worker fetches it before the handler runs);
previous results a worker stored by reference are fetched before planning and
aggregation see them. `StagePayloads` is the one place the orchestrator
touches `shared.claim_check`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from shared.blobstore import BlobStore
from shared.claim_check import (
    DEFAULT_CONTAINER,
    DEFAULT_THRESHOLD_BYTES,
    ClaimCheck,
    is_reference,
)

T = TypeVar("T")
R = TypeVar("R")

# Blob round trips in flight at once when a stage has many large payloads.
CONCURRENCY = 32


def parameters_key(job_id: str, stage: int, task_index: int) -> str:
    """Blob key of a task's parameters: re-planning the stage writes under the same key."""
    return f"job/{job_id}/stage/{stage}/task/{task_index}/parameters"


class StagePayloads:
    """Encodes planned parameters (storing large ones) and decodes results (fetching references)."""

    def __init__(
        self,
        store: BlobStore,
        *,
        container: str = DEFAULT_CONTAINER,
        threshold_bytes: int = DEFAULT_THRESHOLD_BYTES,
    ) -> None:
        self._claim_check = ClaimCheck(store, container, threshold_bytes)
        self._threshold = threshold_bytes

    async def load_many(self, raws: Sequence[bytes]) -> list[Any]:
        """The JSON value of each stored result (None if empty), fetching references concurrently."""
        values = [None if not raw or is_reference(raw) else json.loads(raw) for raw in raws]
        # Only references cost a round trip; a 100,000-task stage of small
        # results is decoded without scheduling a coroutine per result.
        references = [i for i, raw in enumerate(raws) if is_reference(raw)]
        fetched = await _map_bounded(self._load, [raws[i] for i in references])
        for i, value in zip(references, fetched, strict=True):
            values[i] = value
        return values

    async def wrap_parameters(
        self, encoded: Sequence[bytes], *, job_id: str, stage: int
    ) -> list[bytes]:
        """Each task's JSON parameters as sent to the state service, or a reference to a blob."""
        wrapped = list(encoded)
        # Only large payloads (or small ones that look like a reference, which
        # wrap stores too) cost a round trip; the rest pass through untouched.
        large = [i for i, e in enumerate(encoded) if len(e) > self._threshold or is_reference(e)]
        references = await _map_bounded(
            lambda i: self._claim_check.wrap(encoded[i], parameters_key(job_id, stage, i)), large
        )
        for i, reference in zip(large, references, strict=True):
            wrapped[i] = reference
        return wrapped

    async def _load(self, raw: bytes) -> Any:
        return json.loads(await self._claim_check.unwrap(raw))


async def _map_bounded(function: Callable[[T], Awaitable[R]], items: Sequence[T]) -> list[R]:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(item: T) -> R:
        async with limit:
            return await function(item)

    return list(await asyncio.gather(*(one(item) for item in items)))
