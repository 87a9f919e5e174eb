"""The worker's Prometheus metrics: the tasks it runs, by job type, task type and queue.

Outcomes are counted as the state service accepted them (completed, failed,
retrying); an outcome it rejected as stale (the lease was lost) is counted
apart. Queue wait: from the message's enqueue to its claim (a retry's
includes its backoff).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from coremachine.shared.metrics import LATENCY_BUCKETS

TASK_LABELS = ["job_type", "task_type", "queue"]


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Without a registry (unit tests): instruments nobody serves.
        registry = registry if registry is not None else CollectorRegistry()
        self.started = Counter(
            "coremachine_tasks_started",
            "Task attempts started (claims granted).",
            TASK_LABELS,
            registry=registry,
        )
        self.completed = Counter(
            "coremachine_tasks_completed",
            "Tasks completed (outcome accepted).",
            TASK_LABELS,
            registry=registry,
        )
        self.failed = Counter(
            "coremachine_tasks_failed",
            "Tasks failed for good (no attempt left, or a permanent error).",
            TASK_LABELS,
            registry=registry,
        )
        self.retried = Counter(
            "coremachine_tasks_retried",
            "Task attempts that failed and were scheduled again.",
            TASK_LABELS,
            registry=registry,
        )
        self.stale = Counter(
            "coremachine_task_outcomes_stale",
            "Outcomes the state service rejected (lease lost: the task moved on).",
            ["queue"],
            registry=registry,
        )
        self.duration = Histogram(
            "coremachine_task_duration_seconds",
            "Time an attempt ran (parameters loaded, handler run, result stored).",
            TASK_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "coremachine_task_queue_wait_seconds",
            "From a task message's enqueue to its claim.",
            ["task_type", "queue"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.claim_latency = Histogram(
            "coremachine_claim_duration_seconds",
            "Claim calls to the state service (one per received batch).",
            ["queue"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.report_latency = Histogram(
            "coremachine_report_duration_seconds",
            "Outcome reports to the state service (one per batch).",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.dead_lettered = Counter(
            "coremachine_messages_dead_lettered",
            "Messages this process dead-lettered, by reason.",
            ["queue", "reason"],
            registry=registry,
        )
        self._registry = registry
        # Labelled children by (instrument, labels): labels() costs more than
        # the increment itself, and the label sets are few (bounded).
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, instrument: Any, *labels: str) -> Any:
        key = (id(instrument), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = instrument.labels(*labels)
        return found

    def add(self, instrument: Any, tally: Tally[tuple[str, ...]]) -> None:
        """Counts a batch: one increment per label set."""
        for labels, count in tally.items():
            self.child(instrument, *labels).inc(count)

    def watch_load(self, in_flight: Callable[[], int], concurrency: int) -> None:
        """Gauges read at scrape time: nothing to update on the hot path."""
        Gauge(
            "coremachine_worker_tasks_in_flight",
            "Tasks this worker holds (running, or reported and not yet settled).",
            registry=self._registry,
        ).set_function(lambda: float(in_flight()))
        Gauge(
            "coremachine_worker_concurrency",
            "Tasks this worker runs at most at once (WORKER_CONCURRENCY).",
            registry=self._registry,
        ).set(concurrency)
