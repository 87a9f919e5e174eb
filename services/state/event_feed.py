"""Wakes long-polling event readers when a job gets new events.

Transactions that append events NOTIFY `cm_job_events` with the job id and
whether a job-level event (one without a task id) was among them; one LISTEN
connection per state process turns those into asyncio wake-ups for the
ListEvents calls waiting on that job (in any state replica). A reader that
waits for job-level events only (SDK `wait`) is not woken by each task's
events: on a busy job that would be a wasted read every few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "cm_job_events"


def parse_payload(payload: str) -> tuple[str, bool]:
    """(job id, whether job-level events were added) from a notification."""
    job_id, _, level = payload.rpartition(" ")
    if not job_id:  # an older sender's bare job id: treat it as job-level
        return payload, True
    return job_id, level != "task"


@dataclass(eq=False)
class _Waiter:
    event: asyncio.Event
    job_level_only: bool


class EventFeed:
    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]) -> None:
        self.connect = connect
        self._waiters: dict[str, set[_Waiter]] = defaultdict(set)

    @contextlib.contextmanager
    def watching(self, job_id: str, job_level_only: bool = False) -> Iterator[asyncio.Event]:
        """An event set when the job gets new events while the block runs
        (with job_level_only, only events without a task id count).

        Register first, then read: an event committed between the read and the
        wait still sets it, so no wake-up is lost.
        """
        waiter = _Waiter(asyncio.Event(), job_level_only)
        self._waiters[job_id].add(waiter)
        try:
            yield waiter.event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[job_id]

    async def wait(self, job_id: str, timeout: float, job_level_only: bool = False) -> None:
        """Returns when the job gets an event, or after timeout seconds."""
        with self.watching(job_id, job_level_only) as event, contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def _wake(self, job_id: str, job_level: bool = True) -> None:
        for waiter in self._waiters.get(job_id, ()):
            if job_level or not waiter.job_level_only:
                waiter.event.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Listens until stopping is set, reconnecting after failures."""
        while not stopping.is_set():
            try:
                async with await self.connect() as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    while not stopping.is_set():
                        async for notify in conn.notifies(timeout=0.5):
                            self._wake(*parse_payload(notify.payload))
            except psycopg.OperationalError:
                log.warning("event feed connection lost; reconnecting")
                # Readers may have missed a wake-up: let them re-check.
                for job_id in list(self._waiters):
                    self._wake(job_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 1.0)
