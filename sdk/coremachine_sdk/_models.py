"""The SDK's typed objects: what users get back instead of protobuf messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """Lifecycle of a job; values are the plain strings the HTTP API uses."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # A status this SDK does not know (a newer server); never sent by the SDK.
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """True when the job will not change any more (unless resubmitted)."""
        return self in _TERMINAL_JOB

    @property
    def is_success(self) -> bool:
        """True for completed and completed_with_errors."""
        return self in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS)


_TERMINAL_JOB = frozenset(
    {
        JobStatus.COMPLETED,
        JobStatus.COMPLETED_WITH_ERRORS,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    }
)


class TaskStatus(StrEnum):
    """Lifecycle of a task."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Stage:
    """Progress of one stage of a job."""

    stage: int
    status: str
    task_count: int
    completed: int
    failed: int
    cancelled: int
    remaining: int
    # The queue (worker pool) its tasks go to.
    queue: str = ""
    # The latest progress one of its tasks reported (task_id, current, total, message, at).
    last_progress: dict[str, Any] | None = None

    @property
    def done(self) -> int:
        """Tasks that reached a terminal status."""
        return self.task_count - self.remaining


@dataclass(frozen=True)
class Job:
    """A job: its status, per-stage progress and, once finished, its result."""

    job_id: str
    job_type: str
    status: JobStatus
    stage: int
    total_stages: int
    parameters: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    stages: tuple[Stage, ...] = ()
    # Fingerprint of the job type's definition the job runs with.
    definition: str = ""
    # Why the job does not move, when something holds it (None otherwise).
    waiting: str | None = None

    @property
    def is_terminal(self) -> bool:
        """True when the job has finished (completed, failed or cancelled)."""
        return self.status.is_terminal


@dataclass(frozen=True)
class Task:
    """One task of a job's stage."""

    task_id: str
    job_id: str
    task_type: str
    stage: int
    task_index: int
    status: TaskStatus
    attempt: int
    parameters: Any = None
    result: Any = None
    error: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # The latest progress the task reported (current, total, message, at).
    progress: dict[str, Any] | None = None
    # The worker running it (while it runs).
    worker_id: str | None = None


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's event record; `seq` is gap-free per job."""

    seq: int
    event_type: str
    stage: int
    task_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True)
class JobType:
    """A job type the server runs, with its stages and parameter JSON schema."""

    job_type: str
    description: str
    stages: tuple[str, ...]
    parameters_schema: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    # Per stage: name, task_type, queue and fan_out mode.
    stage_info: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class Worker:
    """A worker as it last heartbeated: `state` is live, lost (stopped
    heartbeating: its leases are reclaimed as they expire) or stopped."""

    worker_id: str
    host: str
    state: str
    queues: tuple[str, ...] = ()
    task_types: tuple[str, ...] = ()
    concurrency: int = 0
    in_flight: int = 0
    version: str = ""
    started_at: datetime | None = None
    last_seen_at: datetime | None = None


@dataclass(frozen=True)
class DiagnosisReason:
    """One thing that holds a job: a code (`queue_unserved`, `retry_backoff`, ...) and words."""

    code: str
    message: str


@dataclass(frozen=True)
class Diagnosis:
    """What holds a job that is not terminal (`reasons`, most important first).

    `details` holds the structured facts as the API returns them: the current
    stage's counts, unserved queues, retrying, running and expired tasks, dead
    letters and the janitor's last sweep.
    """

    job_id: str
    job_type: str
    status: JobStatus
    stage: int
    total_stages: int
    summary: str
    reasons: tuple[DiagnosisReason, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    def codes(self) -> list[str]:
        """The reasons' codes, in order."""
        return [r.code for r in self.reasons]
