"""Jobs and their stages as the services see them (pure: no I/O, no protobuf)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.domain.statuses import JobStatus, StageStatus


@dataclass(frozen=True, slots=True)
class StageProgress:
    stage: int
    status: StageStatus
    task_count: int
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    remaining: int = 0
    queue: str = ""
    # The latest progress a task of the stage reported, if any.
    last_progress: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    job_type: str
    status: JobStatus
    stage: int
    total_stages: int
    parameters: dict[str, Any]
    result: Any = None
    error: str = ""
    stages: tuple[StageProgress, ...] = ()
    # Per-stage summaries of the finished stages (keys "1", "2", ...).
    stage_summaries: dict[str, Any] = field(default_factory=dict)
    definition: str = ""
    waiting: str = ""
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None

    def any_failed(self) -> bool:
        """Whether any stage recorded a failed task (saves a query when none did)."""
        return any(s.failed for s in self.stages) or any(
            int(s.get("failed", 0)) for s in self.stage_summaries.values() if isinstance(s, dict)
        )


@dataclass(frozen=True, slots=True)
class StagePolicy:
    """How a stage runs its tasks: retries, tolerated failures, queue, limits."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_failed_tasks: int = 0  # -1 tolerates every failure
    queue: str = ""  # "": the state service's TASKS_QUEUE
    task_timeout_ms: int = 0  # 0: none
    heartbeat_timeout_ms: int = 0  # 0: none
    previous_results: bool = False


@dataclass(frozen=True, slots=True)
class NewTask:
    task_index: int
    task_type: str
    # JSON text of the task's parameters (or a claim-check reference).
    parameters_json: bytes


@dataclass(frozen=True, slots=True)
class StagePlan:
    """(A chunk of) a stage's tasks and the stage's policy."""

    total_tasks: int
    tasks: tuple[NewTask, ...]
    policy: StagePolicy


@dataclass(frozen=True, slots=True)
class NewJob:
    job_id: str
    job_type: str
    # Canonical JSON text of the validated parameters.
    parameters_json: bytes
    total_stages: int
    definition: str = ""
    description: str = ""
    # Stage 1 planned at submit, created in the job's transaction.
    first_stage: StagePlan | None = None
    # No aggregator: the state service records the default summary itself.
    default_result: bool = False


@dataclass(frozen=True, slots=True)
class JobTypeDefinition:
    """What an orchestrator registers about a job type it serves."""

    job_type: str
    fingerprint: str
    parameters_schema: dict[str, Any]
    definition: dict[str, Any]
