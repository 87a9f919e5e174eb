"""The state service's Prometheus metrics: jobs, stages, the janitor, queues, workers.

Counted after the transaction that did the work committed. Task-level
counters (started, completed, failed, retried, durations) are the worker's;
the database pool and gRPC server metrics come from shared/telemetry.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from coremachine.shared.broker import Broker
from coremachine.shared.domain.tasks import WorkerInfo
from coremachine.shared.metrics import LATENCY_BUCKETS

log = logging.getLogger(__name__)

# Stages advanced by this process whose next stage has not had a claim yet.
_MAX_PENDING_STAGES = 10_000


class StateMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Without a registry (unit and integration tests): instruments nobody serves.
        registry = registry if registry is not None else CollectorRegistry()
        self.jobs_created = Counter(
            "coremachine_jobs_created",
            "Jobs created (a resubmit of the same job is not).",
            ["job_type"],
            registry=registry,
        )
        self.jobs_finished = Counter(
            "coremachine_jobs_finished",
            "Jobs that reached a final status (completed, completed_with_errors, failed, cancelled).",
            ["job_type", "status"],
            registry=registry,
        )
        self.stages_completed = Counter(
            "coremachine_stages_completed",
            "Stages advanced (all their tasks ended).",
            ["job_type"],
            registry=registry,
        )
        self.stage_lag = Histogram(
            "coremachine_stage_advancement_lag_seconds",
            "From the last task of a stage done to the first task of the next stage claimed"
            " (observed by the state process that advanced the stage).",
            ["job_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.jobs_resubmitted = Counter(
            "coremachine_jobs_resubmitted",
            "Failed or cancelled jobs redriven.",
            ["job_type"],
            registry=registry,
        )
        self.leases_reclaimed = Counter(
            "coremachine_leases_reclaimed",
            "Expired task leases the janitor reclaimed (the worker stopped heartbeating).",
            registry=registry,
        )
        self.janitor_sweeps = Counter(
            "coremachine_janitor_sweeps",
            "Janitor sweeps by this process, by result.",
            ["result"],
            registry=registry,
        )
        self.janitor_last_sweep = Gauge(
            "coremachine_janitor_last_sweep_timestamp_seconds",
            "When this process's janitor last finished a sweep (Unix time).",
            registry=registry,
        )
        self.queue_messages = Gauge(
            "coremachine_queue_messages",
            "Messages in the queue (waiting, scheduled or being processed; not dead letters).",
            ["queue"],
            registry=registry,
        )
        self.queue_oldest = Gauge(
            "coremachine_queue_oldest_message_age_seconds",
            "Age of the oldest message ready to be delivered (0: none waits).",
            ["queue"],
            registry=registry,
        )
        self.queue_dead_letters = Gauge(
            "coremachine_queue_dead_letters",
            "Messages in the queue's dead-letter sub-queue.",
            ["queue"],
            registry=registry,
        )
        self.workers = Gauge(
            "coremachine_workers",
            "Workers known to the state service, by state (live, lost, stopped).",
            ["state"],
            registry=registry,
        )
        self._pending: OrderedDict[tuple[str, int], tuple[float, str]] = OrderedDict()

    def stage_completed(self, job_id: str, job_type: str, stage: int, total_stages: int) -> None:
        """A stage advanced (committed): counted, and its next stage's first claim awaited."""
        self.stages_completed.labels(job_type).inc()
        if stage < total_stages:
            self._pending[(job_id, stage + 1)] = (time.monotonic(), job_type)
            while len(self._pending) > _MAX_PENDING_STAGES:
                self._pending.popitem(last=False)

    def claimed(self, tasks: Iterable[tuple[str, int]]) -> None:
        """(job_id, stage) of granted claims: the first of a stage advanced here
        observes the advancement lag. O(1) per task; nothing when none is awaited."""
        if not self._pending:
            return
        now = time.monotonic()
        for key in tasks:
            entry = self._pending.pop(key, None)
            if entry is not None:
                self.stage_lag.labels(entry[1]).observe(now - entry[0])


class QueueGauges:
    """Reads the queues' depth, oldest message and dead letters, and the
    workers by state, every `interval` seconds (a scrape reads the last values)."""

    def __init__(
        self,
        metrics: StateMetrics,
        broker: Broker,
        queues: Callable[[], Awaitable[set[str]]],
        workers: Callable[[], Awaitable[Sequence[WorkerInfo]]],
        interval: float,
    ) -> None:
        self.metrics = metrics
        self.broker = broker
        self.queues = queues
        self.workers = workers
        self.interval = interval

    async def refresh(self) -> None:
        for queue in sorted(await self.queues()):
            stats = await self.broker.queue_stats(queue)
            self.metrics.queue_messages.labels(queue).set(stats.depth)
            self.metrics.queue_dead_letters.labels(queue).set(stats.dead_letters)
            age = 0.0
            if stats.oldest_enqueued_at is not None:
                age = (dt.datetime.now(dt.UTC) - stats.oldest_enqueued_at).total_seconds()
                age = max(age, 0.0)
            self.metrics.queue_oldest.labels(queue).set(age)
        counts = {"live": 0, "lost": 0, "stopped": 0}
        for worker in await self.workers():
            counts[worker.state] = counts.get(worker.state, 0) + 1
        for state, count in counts.items():
            self.metrics.workers.labels(state).set(count)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.refresh()
            except Exception as exc:  # a broker outage must not stop the service
                log.warning("reading queue metrics failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)
