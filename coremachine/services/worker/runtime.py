"""The worker's side of TaskContext: heartbeats and progress reports.

Handlers call ctx.heartbeat() and ctx.progress() from the event loop or from
their own thread (sync handlers), so both only record, under a lock; the
progress loop sends the latest report of each task at most once per
interval, in one ReportProgress call for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from coremachine.shared.domain.tasks import ProgressReport
from coremachine.shared.state_client import StateClient

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0


class WorkerRuntime:
    def __init__(self, state: StateClient, lease_of: Callable[[str], str | None]) -> None:
        self.state = state
        # task_id -> its current lease token (None once it is no longer running)
        self.lease_of = lease_of
        self._lock = threading.Lock()
        self._heartbeats: dict[str, float] = {}
        self._progress: dict[str, tuple[float, float | None, str]] = {}
        self._pending = threading.Event()

    # -- TaskRuntime (called by handlers, from any thread) ----------------------

    def heartbeat(self, task_id: str, details: Any) -> None:
        with self._lock:
            self._heartbeats[task_id] = time.monotonic()

    def progress(self, task_id: str, current: float, total: float | None, message: str) -> None:
        with self._lock:
            self._progress[task_id] = (current, total, message)
        self._pending.set()

    # -- the worker's side -------------------------------------------------------

    def last_heartbeat(self, task_id: str) -> float | None:
        with self._lock:
            return self._heartbeats.get(task_id)

    def forget(self, task_id: str) -> None:
        with self._lock:
            self._heartbeats.pop(task_id, None)
            self._progress.pop(task_id, None)

    def take_final(self, leases: dict[str, str]) -> list[ProgressReport]:
        """The unsent reports of tasks about to be reported done (task id -> lease):
        sent first, so a task that reports and finishes within a second still
        leaves its last progress behind."""
        with self._lock:
            taken = {t: self._progress.pop(t) for t in leases if t in self._progress}
        return [
            ProgressReport(task_id, leases[task_id], current, total, message)
            for task_id, (current, total, message) in taken.items()
        ]

    def _take_reports(self) -> list[ProgressReport]:
        with self._lock:
            taken, self._progress = self._progress, {}
            self._pending.clear()
        reports = []
        for task_id, (current, total, message) in taken.items():
            token = self.lease_of(task_id)
            if token is not None:
                reports.append(ProgressReport(task_id, token, current, total, message))
        return reports

    async def run(self, done: asyncio.Event) -> None:
        """Sends progress reports until `done` is set (then once more)."""
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), PROGRESS_INTERVAL)
            if not self._pending.is_set():
                continue
            reports = self._take_reports()
            if not reports:
                continue
            try:
                await self.state.report_progress(reports)
            except Exception as exc:
                # Progress is informational: the next report supersedes it.
                log.warning("reporting progress failed: %s", exc)
