"""What the state store takes and returns (internal to the state service)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from coremachine.services.state.rows import EventRow, JobRow, StageRow
from coremachine.shared.domain.retry import RetryPolicy


@dataclass(slots=True)
class JobView:
    job: JobRow
    stages: list[StageRow]
    # Why the job does not move: a parked message, or queues no live worker consumes.
    waiting: str = ""


@dataclass(slots=True)
class EventsPage:
    events: list[EventRow]
    # The job is terminal and no event follows these.
    complete: bool
    # With complete: the job as it ended (same snapshot as the events).
    job: JobView | None = None


@dataclass(frozen=True, slots=True)
class NewTaskSpec:
    task_index: int
    task_type: str
    parameters_json: str


@dataclass(frozen=True, slots=True)
class StagePolicy:
    retry: RetryPolicy
    max_failed_tasks: int = 0  # -1 tolerates every failure
    queue: str | None = None  # None: the service's TASKS_QUEUE
    task_timeout_ms: int = 0
    heartbeat_timeout_ms: int = 0
    previous_results: bool = False
    # (key, limit) pairs: at most `limit` tasks with `key` run at once.
    concurrency: tuple[tuple[str, int], ...] = ()
    rate_limit: RateLimitSpec | None = None


@dataclass(frozen=True, slots=True)
class RateLimitSpec:
    """At most per_second task starts per second, bursts up to burst, shared by name."""

    name: str
    per_second: float
    burst: int


@dataclass(frozen=True, slots=True)
class JobStart:
    """When and in which order a new job starts (flow control)."""

    priority: int = 5
    not_before: dt.datetime | None = None
    # At most this many jobs of its type run at once (None: no limit).
    max_running: int | None = None
    # Some stage has concurrency keys or a rate limit.
    flow_limited: bool = False


@dataclass(frozen=True, slots=True)
class StageTasks:
    """A whole stage's tasks, created in one transaction (stage 1 at submit)."""

    total_tasks: int
    tasks: list[NewTaskSpec]
    policy: StagePolicy


@dataclass(frozen=True, slots=True)
class Claim:
    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """What a worker needs to run a claimed task."""

    task_id: str
    job_id: str
    job_type: str
    task_type: str
    stage: int
    task_index: int
    attempt: int
    parameters_json: str
    lease_token: str
    queue: str = ""
    task_timeout_ms: int = 0
    heartbeat_timeout_ms: int = 0
    previous_results: bool = False


@dataclass(slots=True)
class ClaimOutcome:
    task_id: str
    task: ClaimedTask | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HeldTask:
    """A task a claim held for a limit instead of starting it."""

    task_id: str
    job_id: str
    task_type: str
    attempt: int
    queue: str
    priority: int
    held_for: str
    # A rate limit's start time: its message is sent again for then.
    release_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Outcome:
    task_id: str
    lease_token: str
    succeeded: bool
    result_json: str | None = None
    error: str = ""
    retryable: bool = True
    # The traceparent of the attempt's span (the stage advancement links to it).
    trace_context: str = ""


@dataclass(slots=True)
class OutcomeResult:
    task_id: str
    accepted: bool
    task_status: str = ""


@dataclass(frozen=True, slots=True)
class StageResult:
    task_index: int
    task_id: str
    status: str
    result_json: str | None
    error: str | None
