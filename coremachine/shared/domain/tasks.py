"""Tasks, claims and outcomes as the services see them (pure: no I/O, no protobuf)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from coremachine.shared.domain.statuses import TaskStatus


@dataclass(frozen=True, slots=True)
class TaskClaim:
    """A worker asks to run this attempt of a task (from the task's message)."""

    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """What a worker needs to run a task it was granted."""

    task_id: str
    job_id: str
    job_type: str
    task_type: str
    stage: int
    task_index: int
    attempt: int
    parameters_json: bytes
    lease_token: str
    queue: str = ""
    task_timeout_ms: int = 0
    heartbeat_timeout_ms: int = 0
    previous_results: bool = False


@dataclass(frozen=True, slots=True)
class ClaimResult:
    task_id: str
    task: ClaimedTask | None
    # Why a claim was refused ("stale_attempt", "task_completed", "unknown_task", ...).
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    task_id: str
    lease_token: str
    succeeded: bool
    result_json: bytes = b""
    error: str = ""
    # False for a permanent error: the task fails without another attempt.
    retryable: bool = True
    # W3C traceparent of the attempt's span ("" when not traced).
    trace_context: str = ""


@dataclass(frozen=True, slots=True)
class OutcomeAck:
    task_id: str
    # False when the outcome was stale (lease lost, duplicate) and changed nothing.
    accepted: bool
    task_status: str = ""  # "completed", "failed" or "retrying" when accepted


@dataclass(frozen=True, slots=True)
class TaskLease:
    task_id: str
    lease_token: str


@dataclass(frozen=True, slots=True)
class LeaseRenewal:
    renewed: tuple[str, ...]
    lost: tuple[str, ...]
    # Of the lost ones, those whose job was cancelled or failed.
    cancelled: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProgressReport:
    task_id: str
    lease_token: str
    current: float
    total: float | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class StageResult:
    task_index: int
    task_id: str
    status: TaskStatus
    # As stored: JSON text, or a claim-check reference.
    result_json: bytes
    error: str = ""


@dataclass(frozen=True, slots=True)
class FailedTask:
    task_id: str
    stage: int
    task_index: int
    error: str


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker as it heartbeats: its pool, what it runs, its load."""

    worker_id: str
    host: str
    queues: tuple[str, ...]
    task_types: tuple[str, ...]
    concurrency: int
    in_flight: int = 0
    version: str = ""
    started_at: dt.datetime | None = None
    last_seen_at: dt.datetime | None = None
    state: str = "live"  # "live", "lost" or "stopped"
