"""The previous stage's results for handlers of stages that ask for them.

Fetched from the state service once per (job, stage) and shared by every
task of this worker that needs them while they are fresh (a wide stage that
reads its predecessor's results would otherwise fetch them per task).
Results a worker stored by claim check are fetched too: handlers see values.
"""

from __future__ import annotations

import asyncio
import time

from coremachine.app import PreviousResult
from coremachine.services.worker.claim_check import TaskPayloads
from coremachine.shared.state_client import StateClient

CACHE_SECONDS = 30.0
CACHE_ENTRIES = 16


class PreviousResults:
    def __init__(self, state: StateClient, payloads: TaskPayloads) -> None:
        self.state = state
        self.payloads = payloads
        self._cache: dict[tuple[str, int], tuple[float, asyncio.Future[list[PreviousResult]]]] = {}

    async def of(self, job_id: str, stage: int) -> list[PreviousResult]:
        """Results of `stage` of the job by task index (stage 0: none)."""
        if stage < 1:
            return []
        key = (job_id, stage)
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now and not _failed(cached[1]):
            return await asyncio.shield(cached[1])
        future: asyncio.Future[list[PreviousResult]] = asyncio.ensure_future(
            self._fetch(job_id, stage)
        )
        self._cache[key] = (now + CACHE_SECONDS, future)
        if len(self._cache) > CACHE_ENTRIES:
            oldest = min(self._cache, key=lambda k: self._cache[k][0])
            self._cache.pop(oldest, None)
        return await asyncio.shield(future)

    async def _fetch(self, job_id: str, stage: int) -> list[PreviousResult]:
        rows = await self.state.stage_results(job_id, stage)
        values = await self.payloads.load_many([r.result_json for r in rows])
        return [
            PreviousResult(r.task_index, r.status.value, value, r.error)
            for r, value in zip(rows, values, strict=True)
        ]


def _failed(future: asyncio.Future[list[PreviousResult]]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)
