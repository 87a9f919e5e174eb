"""Wakes long-polling event readers when a job gets new events.

Transactions that append events NOTIFY `cm_job_events` with the job id and
the highest level among the events added: "end" (an event that ends the
job), "job" (job- or stage-level), or "task" (per-task events only). One
LISTEN connection per state process turns those into asyncio wake-ups for the
ListEvents calls waiting on that job (in any state replica). A reader waiting
for job-level events is not woken by each task's events, nor one waiting for
the end (SDK `wait`) by anything else: on a busy job that would be a wasted
read every few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "cm_job_events"
# Reconnection backoff of the LISTEN connection while PostgreSQL is down.
_RETRY_SECONDS = 0.5
_MAX_RETRY_SECONDS = 5.0


class Level(IntEnum):
    """What a notification carries, or the least a reader wants woken for."""

    TASK = 0
    JOB = 1
    END = 2


_LEVELS = {"task": Level.TASK, "job": Level.JOB, "end": Level.END}


def parse_payload(payload: str) -> tuple[str, Level]:
    """(job id, level of the events added) from a notification."""
    job_id, _, level = payload.rpartition(" ")
    if not job_id:  # a bare job id (an older sender): wake everyone
        return payload, Level.END
    return job_id, _LEVELS.get(level, Level.END)


@dataclass(eq=False)
class _Waiter:
    event: asyncio.Event
    level: Level


class EventFeed:
    def __init__(self, connect: Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]) -> None:
        self.connect = connect
        self._waiters: dict[str, set[_Waiter]] = defaultdict(set)

    @contextlib.contextmanager
    def watching(self, job_id: str, level: Level = Level.TASK) -> Iterator[asyncio.Event]:
        """An event set when the job gets new events of at least `level`
        while the block runs.

        Register first, then read: an event committed between the read and the
        wait still sets it, so no wake-up is lost.
        """
        waiter = _Waiter(asyncio.Event(), level)
        self._waiters[job_id].add(waiter)
        try:
            yield waiter.event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[job_id]

    async def wait(self, job_id: str, timeout: float, level: Level = Level.TASK) -> None:
        """Returns when the job gets an event of at least `level`, or after timeout seconds."""
        with self.watching(job_id, level) as event, contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def _wake(self, job_id: str, level: Level = Level.END) -> None:
        for waiter in self._waiters.get(job_id, ()):
            if level >= waiter.level:
                waiter.event.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Listens until stopping is set, reconnecting after failures (with backoff
        while PostgreSQL is down)."""
        retry_in = _RETRY_SECONDS
        while not stopping.is_set():
            try:
                async with await self.connect() as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    retry_in = _RETRY_SECONDS
                    while not stopping.is_set():
                        async for notify in conn.notifies(timeout=0.5):
                            self._wake(*parse_payload(notify.payload))
            except (psycopg.Error, OSError) as exc:
                log.warning("event feed connection lost (%s); reconnecting", exc)
                # Readers may have missed a wake-up: let them re-check.
                for job_id in list(self._waiters):
                    self._wake(job_id)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), retry_in)
                retry_in = min(retry_in * 2, _MAX_RETRY_SECONDS)
