"""The orchestrator's Prometheus metrics: submits, stage plans, finalizations, dead letters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from coremachine.shared.metrics import LATENCY_BUCKETS


class OrchestratorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Without a registry (unit tests): instruments nobody serves.
        registry = registry if registry is not None else CollectorRegistry()
        self.submitted = Counter(
            "coremachine_jobs_submitted",
            "SubmitJob calls accepted (created=false: the same job existed).",
            ["job_type", "created"],
            registry=registry,
        )
        self.stage_plans = Counter(
            "coremachine_stage_plans",
            "Stages planned (stage 1 of a resubmitted existing job is planned again).",
            ["job_type"],
            registry=registry,
        )
        self.tasks_planned = Counter(
            "coremachine_tasks_planned",
            "Tasks in the stages planned.",
            ["job_type", "task_type", "queue"],
            registry=registry,
        )
        self.planning = Histogram(
            "coremachine_stage_planning_seconds",
            "Time to plan a stage (fan-out and claim check, without creating the tasks).",
            ["job_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.finalized = Counter(
            "coremachine_jobs_finalized",
            "Jobs whose aggregator ran and whose result was recorded.",
            ["job_type"],
            registry=registry,
        )
        self.planning_failed = Counter(
            "coremachine_jobs_failed_planning",
            "Jobs failed because planning or aggregating raised.",
            ["job_type"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "coremachine_messages_dead_lettered",
            "Messages this process dead-lettered, by reason.",
            ["queue", "reason"],
            registry=registry,
        )
