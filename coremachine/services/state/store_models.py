"""What the state store takes and returns (internal to the state service)."""

from __future__ import annotations

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
