"""The worker heartbeats into the state service: who it is, its pool, its load.

The state service shows a worker that stops heartbeating as lost (its
leases are reclaimed by the janitor as they expire), and tells jobs whose
queue no live worker consumes that they wait for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import socket
from collections.abc import Callable

from coremachine.shared.domain.tasks import WorkerInfo
from coremachine.shared.state_client import StateClient

log = logging.getLogger(__name__)


class Presence:
    def __init__(
        self,
        state: StateClient,
        *,
        worker_id: str,
        queues: list[str],
        task_types: list[str],
        concurrency: int,
        version: str,
        interval: float,
        in_flight: Callable[[], int],
    ) -> None:
        self.state = state
        self.interval = interval
        self.in_flight = in_flight
        self.info = WorkerInfo(
            worker_id=worker_id,
            host=socket.gethostname(),
            queues=tuple(queues),
            task_types=tuple(sorted(task_types)),
            concurrency=concurrency,
            version=version,
            started_at=dt.datetime.now(dt.UTC),
        )

    def _now(self) -> WorkerInfo:
        info = self.info
        return WorkerInfo(
            info.worker_id,
            info.host,
            info.queues,
            info.task_types,
            info.concurrency,
            self.in_flight(),
            info.version,
            info.started_at,
        )

    async def run(self, stopping: asyncio.Event) -> None:
        ttl = max(int(self.interval * 3), 3)
        while not stopping.is_set():
            try:
                await self.state.heartbeat_worker(self._now(), ttl)
            except Exception as exc:
                log.warning("worker heartbeat failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)
        try:
            await self.state.heartbeat_worker(self._now(), ttl, stopping=True)
        except Exception as exc:
            log.warning("saying the worker stops failed (it shows as lost later): %s", exc)
