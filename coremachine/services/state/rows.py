"""Database rows of the state service (used only inside this service)."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class JobRow:
    job_id: str
    job_type: str
    parameters: dict[str, Any]
    status: str
    stage: int
    total_stages: int
    stage_results: dict[str, Any]
    metadata: dict[str, Any]
    result_data: Any
    error_details: str | None
    last_event_seq: int
    created_at: dt.datetime
    updated_at: dt.datetime
    completed_at: dt.datetime | None
    # The job's result is the default summary, recorded by the state service.
    default_result: bool
    # Fingerprint of the job type's definition it was created with.
    definition: str
    # Why the job does not move (a parked message), if something holds it.
    waiting: str | None
    # W3C traceparent of the job's trace (shared/tracing.py), if traced.
    trace_context: str | None


@dataclass(slots=True)
class StageRow:
    job_id: str
    stage: int
    status: str
    task_count: int
    remaining: int
    completed: int
    failed: int
    cancelled: int
    max_attempts: int
    backoff_base_ms: int
    backoff_max_ms: int
    max_failed_tasks: int
    started_at: dt.datetime
    completed_at: dt.datetime | None
    last_counted_at: dt.datetime | None
    # The queue its tasks go to (None: the service's TASKS_QUEUE).
    queue: str | None
    task_timeout_ms: int
    heartbeat_timeout_ms: int
    previous_results: bool
    last_progress: dict[str, Any] | None

    def failures_exceed_tolerance(self) -> bool:
        return self.max_failed_tasks >= 0 and self.failed > self.max_failed_tasks


@dataclass(slots=True)
class TaskRow:
    task_id: str
    job_id: str
    job_type: str
    task_type: str
    stage: int
    task_index: int
    parameters: Any
    status: str
    result_data: Any
    error_details: str | None
    attempt: int
    attempt_base: int
    lease_token: uuid.UUID | None
    lease_owner: str | None
    lease_expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    progress: dict[str, Any] | None
    # When the janitor last re-sent its lost message.
    resent_at: dt.datetime | None
    # W3C traceparent of the task's last reported attempt, if traced.
    trace_context: str | None
    # From the task's stage (retry budget); listed with each task.
    max_attempts: int


@dataclass(slots=True)
class EventRow:
    job_id: str
    seq: int
    event_type: str
    stage: int | None
    task_id: str | None
    data: dict[str, Any]
    created_at: dt.datetime
