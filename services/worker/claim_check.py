"""Claim check of task payloads on the worker, so handlers only ever see real values.

A task's parameters may arrive as a claim-check reference (the orchestrator
stored them because they were large); a handler's result larger than the
threshold leaves as a reference to a blob written here. Both directions go
through `TaskPayloads`, the one place the worker touches `shared.claim_check`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from shared.blobstore import BlobStore
from shared.claim_check import (
    DEFAULT_CONTAINER,
    DEFAULT_THRESHOLD_BYTES,
    ClaimCheck,
    is_reference,
)

# Fetching a fan-in's referenced results: enough to hide blob latency, few
# enough not to open hundreds of connections at once.
LOAD_CONCURRENCY = 32


def result_key(job_id: str, stage: int, task_index: int) -> str:
    """Blob key of a task's result: a retry of the same task writes under the same key."""
    return f"job/{job_id}/stage/{stage}/task/{task_index}/result"


class TaskPayloads:
    """Decodes payloads (fetching referenced ones) and encodes results (storing large ones)."""

    def __init__(
        self,
        store: BlobStore,
        *,
        container: str = DEFAULT_CONTAINER,
        threshold_bytes: int = DEFAULT_THRESHOLD_BYTES,
    ) -> None:
        self._claim_check = ClaimCheck(store, container, threshold_bytes)

    async def load(self, raw: bytes) -> Any:
        """The JSON value of a stored payload, fetched first if it is a reference; None if empty."""
        if not raw:
            return None
        return json.loads(await self._claim_check.unwrap(raw))

    async def load_many(self, raws: Sequence[bytes]) -> list[Any]:
        """`load` for each payload, in order, fetching references concurrently."""
        values = [None if not raw or is_reference(raw) else json.loads(raw) for raw in raws]
        # Only references cost a round trip: no coroutine per small result.
        references = [i for i, raw in enumerate(raws) if is_reference(raw)]
        limit = asyncio.Semaphore(LOAD_CONCURRENCY)

        async def fetch(raw: bytes) -> Any:
            async with limit:
                return await self.load(raw)

        fetched = await asyncio.gather(*(fetch(raws[i]) for i in references))
        for i, value in zip(references, fetched, strict=True):
            values[i] = value
        return values

    async def store_result(self, value: Any, *, job_id: str, stage: int, task_index: int) -> bytes:
        """The result as reported to the state service: its JSON, or a reference to a blob."""
        encoded = json.dumps(value).encode()
        return await self._claim_check.wrap(encoded, result_key(job_id, stage, task_index))
