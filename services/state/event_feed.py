"""Wakes long-polling event readers when a job gets new events.

Transactions that append events NOTIFY `cm_job_events` with the job id; one
LISTEN connection per state process turns those into asyncio wake-ups for the
ListEvents calls waiting on that job (in any state replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "cm_job_events"


class EventFeed:
    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]) -> None:
        self.connect = connect
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)

    @contextlib.contextmanager
    def watching(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set when the job gets new events while the block runs.

        Register first, then read: an event committed between the read and the
        wait still sets it, so no wake-up is lost.
        """
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    async def wait(self, job_id: str, timeout: float) -> None:
        """Returns when the job gets an event, or after timeout seconds."""
        with self.watching(job_id) as event, contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def _wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Listens until stopping is set, reconnecting after failures."""
        while not stopping.is_set():
            try:
                async with await self.connect() as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    while not stopping.is_set():
                        async for notify in conn.notifies(timeout=0.5):
                            self._wake(notify.payload)
            except psycopg.OperationalError:
                log.warning("event feed connection lost; reconnecting")
                # Readers may have missed a wake-up: let them re-check.
                for job_id in list(self._waiters):
                    self._wake(job_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 1.0)
