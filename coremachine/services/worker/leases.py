"""Keeps the leases of running tasks and the locks of their messages alive.

Every interval (a third of the shorter of the lease and the message lock):
- a task of a stage with a heartbeat timeout that has not heartbeated for
  that long is given up on (reported as a retryable failure, so another
  attempt runs, maybe elsewhere);
- the leases of the other running tasks are renewed; a lease the state
  service no longer grants is lost — the task was cancelled (its job was
  cancelled or failed) or reclaimed — and its handler's cancellation signal
  is set, so a cooperative handler stops;
- their messages' broker locks are renewed.
A worker that dies renews nothing: its leases expire and the janitor
re-queues the tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from coremachine.services.worker.inflight import InFlight
from coremachine.services.worker.runtime import WorkerRuntime
from coremachine.shared.broker import Broker
from coremachine.shared.domain.tasks import TaskLease
from coremachine.shared.state_client import StateClient

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        state: StateClient,
        broker: Broker,
        runtime: WorkerRuntime,
        *,
        lease_seconds: int,
        interval: float,
        running: Callable[[], list[InFlight]],
        time_out: Callable[[InFlight, str], None],
    ) -> None:
        self.state = state
        self.broker = broker
        self.runtime = runtime
        self.lease_seconds = lease_seconds
        self.interval = interval
        self.running = running
        self.time_out = time_out

    async def run(self, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self._next_wait())
            try:
                await self.tick()
            except Exception:  # a bad tick must not end the renewals
                log.exception("renewing leases failed")

    def _next_wait(self) -> float:
        """The interval, or sooner when a heartbeat timeout is due."""
        timeouts = [
            e.task.heartbeat_timeout_ms / 1000
            for e in self.running()
            if e.task.heartbeat_timeout_ms
        ]
        return min([self.interval, *(t / 3 for t in timeouts)]) if timeouts else self.interval

    async def tick(self) -> None:
        now = asyncio.get_running_loop().time()
        for entry in self.running():
            self._check_heartbeat(entry, now)
        running = self.running()
        if not running:
            return
        try:
            renewal = await self.state.renew_leases(
                self.lease_seconds, [TaskLease(e.task_id, e.lease_token) for e in running]
            )
        except Exception as exc:
            log.warning("renewing leases failed: %s", exc)
        else:
            cancelled = set(renewal.cancelled)
            for entry in running:
                if entry.task_id in cancelled:
                    entry.cancel.set("the job was cancelled or failed")
                elif entry.task_id in renewal.lost:
                    entry.cancel.set("the task's lease was lost (it may run elsewhere)")
            if renewal.lost:
                log.warning("leases lost for %s", list(renewal.lost)[:10])
        try:
            renewed = await self.broker.renew_locks([e.message for e in running])
            by_token = {m.lock_token: m for m in renewed}
            for entry in running:
                entry.message = by_token.get(entry.message.lock_token, entry.message)
        except Exception:
            log.exception("renewing message locks failed")

    def _check_heartbeat(self, entry: InFlight, now: float) -> None:
        timeout_ms = entry.task.heartbeat_timeout_ms
        if not timeout_ms:
            return
        # Loop time and monotonic time share the clock on the default loop.
        last = max(entry.last_heartbeat, self.runtime.last_heartbeat(entry.task_id) or 0.0)
        silent = now - last
        if silent > timeout_ms / 1000:
            self.time_out(
                entry,
                f"no heartbeat for {silent:.1f}s (the stage's heartbeat timeout is"
                f" {timeout_ms / 1000:g}s)",
            )
