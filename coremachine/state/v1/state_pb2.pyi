import datetime

from coremachine.common.v1 import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateJobRequest(_message.Message):
    __slots__ = ("job_id", "job_type", "parameters_json", "total_stages", "metadata_json", "first_stage", "default_result", "definition", "priority", "not_before", "max_running", "flow_limited")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STAGES_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    FIRST_STAGE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RESULT_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_FIELD_NUMBER: _ClassVar[int]
    FLOW_LIMITED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    job_type: str
    parameters_json: bytes
    total_stages: int
    metadata_json: bytes
    first_stage: StageTasks
    default_result: bool
    definition: str
    priority: int
    not_before: _timestamp_pb2.Timestamp
    max_running: int
    flow_limited: bool
    def __init__(self, job_id: _Optional[str] = ..., job_type: _Optional[str] = ..., parameters_json: _Optional[bytes] = ..., total_stages: _Optional[int] = ..., metadata_json: _Optional[bytes] = ..., first_stage: _Optional[_Union[StageTasks, _Mapping]] = ..., default_result: _Optional[bool] = ..., definition: _Optional[str] = ..., priority: _Optional[int] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_running: _Optional[int] = ..., flow_limited: _Optional[bool] = ...) -> None: ...

class StageTasks(_message.Message):
    __slots__ = ("total_tasks", "tasks", "policy")
    TOTAL_TASKS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    total_tasks: int
    tasks: _containers.RepeatedCompositeFieldContainer[NewTask]
    policy: StagePolicy
    def __init__(self, total_tasks: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[NewTask, _Mapping]]] = ..., policy: _Optional[_Union[StagePolicy, _Mapping]] = ...) -> None: ...

class CreateJobResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    created: bool
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("status", "job_type", "limit", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: _common_pb2.JobStatus
    job_type: str
    limit: int
    page_token: str
    def __init__(self, status: _Optional[_Union[_common_pb2.JobStatus, str]] = ..., job_type: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[_common_pb2.Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[_common_pb2.Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StagePolicy(_message.Message):
    __slots__ = ("max_attempts", "backoff_base_ms", "backoff_max_ms", "max_failed_tasks", "queue", "task_timeout_ms", "heartbeat_timeout_ms", "previous_results", "concurrency", "rate_limit")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_BASE_MS_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MAX_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_FAILED_TASKS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RESULTS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    backoff_base_ms: int
    backoff_max_ms: int
    max_failed_tasks: int
    queue: str
    task_timeout_ms: int
    heartbeat_timeout_ms: int
    previous_results: bool
    concurrency: _containers.RepeatedCompositeFieldContainer[ConcurrencyLimit]
    rate_limit: RateLimit
    def __init__(self, max_attempts: _Optional[int] = ..., backoff_base_ms: _Optional[int] = ..., backoff_max_ms: _Optional[int] = ..., max_failed_tasks: _Optional[int] = ..., queue: _Optional[str] = ..., task_timeout_ms: _Optional[int] = ..., heartbeat_timeout_ms: _Optional[int] = ..., previous_results: _Optional[bool] = ..., concurrency: _Optional[_Iterable[_Union[ConcurrencyLimit, _Mapping]]] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ...) -> None: ...

class ConcurrencyLimit(_message.Message):
    __slots__ = ("key", "limit")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    key: str
    limit: int
    def __init__(self, key: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("name", "per_second", "burst")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    name: str
    per_second: float
    burst: int
    def __init__(self, name: _Optional[str] = ..., per_second: _Optional[float] = ..., burst: _Optional[int] = ...) -> None: ...

class NewTask(_message.Message):
    __slots__ = ("task_index", "task_type", "parameters_json")
    TASK_INDEX_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    task_index: int
    task_type: str
    parameters_json: bytes
    def __init__(self, task_index: _Optional[int] = ..., task_type: _Optional[str] = ..., parameters_json: _Optional[bytes] = ...) -> None: ...

class CreateStageTasksRequest(_message.Message):
    __slots__ = ("job_id", "stage", "total_tasks", "tasks", "policy")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TASKS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    stage: int
    total_tasks: int
    tasks: _containers.RepeatedCompositeFieldContainer[NewTask]
    policy: StagePolicy
    def __init__(self, job_id: _Optional[str] = ..., stage: _Optional[int] = ..., total_tasks: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[NewTask, _Mapping]]] = ..., policy: _Optional[_Union[StagePolicy, _Mapping]] = ...) -> None: ...

class CreateStageTasksResponse(_message.Message):
    __slots__ = ("created", "stage_completed")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    STAGE_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    created: int
    stage_completed: bool
    def __init__(self, created: _Optional[int] = ..., stage_completed: _Optional[bool] = ...) -> None: ...

class TaskClaim(_message.Message):
    __slots__ = ("task_id", "attempt")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class ClaimTasksRequest(_message.Message):
    __slots__ = ("worker_id", "lease_seconds", "claims")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    lease_seconds: int
    claims: _containers.RepeatedCompositeFieldContainer[TaskClaim]
    def __init__(self, worker_id: _Optional[str] = ..., lease_seconds: _Optional[int] = ..., claims: _Optional[_Iterable[_Union[TaskClaim, _Mapping]]] = ...) -> None: ...

class ClaimResult(_message.Message):
    __slots__ = ("task_id", "granted", "lease_token", "task", "reason", "queue", "task_timeout_ms", "heartbeat_timeout_ms", "previous_results")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    TASK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_RESULTS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    granted: bool
    lease_token: str
    task: _common_pb2.Task
    reason: str
    queue: str
    task_timeout_ms: int
    heartbeat_timeout_ms: int
    previous_results: bool
    def __init__(self, task_id: _Optional[str] = ..., granted: _Optional[bool] = ..., lease_token: _Optional[str] = ..., task: _Optional[_Union[_common_pb2.Task, _Mapping]] = ..., reason: _Optional[str] = ..., queue: _Optional[str] = ..., task_timeout_ms: _Optional[int] = ..., heartbeat_timeout_ms: _Optional[int] = ..., previous_results: _Optional[bool] = ...) -> None: ...

class ClaimTasksResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ClaimResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ClaimResult, _Mapping]]] = ...) -> None: ...

class TaskOutcome(_message.Message):
    __slots__ = ("task_id", "lease_token", "succeeded", "result_json", "error", "retryable", "trace_context")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease_token: str
    succeeded: bool
    result_json: bytes
    error: str
    retryable: bool
    trace_context: str
    def __init__(self, task_id: _Optional[str] = ..., lease_token: _Optional[str] = ..., succeeded: _Optional[bool] = ..., result_json: _Optional[bytes] = ..., error: _Optional[str] = ..., retryable: _Optional[bool] = ..., trace_context: _Optional[str] = ...) -> None: ...

class CompleteTasksRequest(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[TaskOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[TaskOutcome, _Mapping]]] = ...) -> None: ...

class OutcomeResult(_message.Message):
    __slots__ = ("task_id", "accepted", "task_status")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    TASK_STATUS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    accepted: bool
    task_status: str
    def __init__(self, task_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., task_status: _Optional[str] = ...) -> None: ...

class CompleteTasksResponse(_message.Message):
    __slots__ = ("results", "stages_completed")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    STAGES_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[OutcomeResult]
    stages_completed: _containers.RepeatedCompositeFieldContainer[StageRef]
    def __init__(self, results: _Optional[_Iterable[_Union[OutcomeResult, _Mapping]]] = ..., stages_completed: _Optional[_Iterable[_Union[StageRef, _Mapping]]] = ...) -> None: ...

class StageRef(_message.Message):
    __slots__ = ("job_id", "stage")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    stage: int
    def __init__(self, job_id: _Optional[str] = ..., stage: _Optional[int] = ...) -> None: ...

class TaskLease(_message.Message):
    __slots__ = ("task_id", "lease_token")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease_token: str
    def __init__(self, task_id: _Optional[str] = ..., lease_token: _Optional[str] = ...) -> None: ...

class RenewLeasesRequest(_message.Message):
    __slots__ = ("lease_seconds", "leases")
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LEASES_FIELD_NUMBER: _ClassVar[int]
    lease_seconds: int
    leases: _containers.RepeatedCompositeFieldContainer[TaskLease]
    def __init__(self, lease_seconds: _Optional[int] = ..., leases: _Optional[_Iterable[_Union[TaskLease, _Mapping]]] = ...) -> None: ...

class RenewLeasesResponse(_message.Message):
    __slots__ = ("renewed", "lost", "cancelled")
    RENEWED_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    renewed: _containers.RepeatedScalarFieldContainer[str]
    lost: _containers.RepeatedScalarFieldContainer[str]
    cancelled: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, renewed: _Optional[_Iterable[str]] = ..., lost: _Optional[_Iterable[str]] = ..., cancelled: _Optional[_Iterable[str]] = ...) -> None: ...

class ReleaseTasksRequest(_message.Message):
    __slots__ = ("leases",)
    LEASES_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[TaskLease]
    def __init__(self, leases: _Optional[_Iterable[_Union[TaskLease, _Mapping]]] = ...) -> None: ...

class ReleaseTasksResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, released: _Optional[_Iterable[str]] = ...) -> None: ...

class GetStageResultsRequest(_message.Message):
    __slots__ = ("job_id", "stage", "include_job", "from_index", "limit")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_JOB_FIELD_NUMBER: _ClassVar[int]
    FROM_INDEX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    stage: int
    include_job: bool
    from_index: int
    limit: int
    def __init__(self, job_id: _Optional[str] = ..., stage: _Optional[int] = ..., include_job: _Optional[bool] = ..., from_index: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class StageTaskResult(_message.Message):
    __slots__ = ("task_index", "task_id", "status", "result_json", "error")
    TASK_INDEX_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task_index: int
    task_id: str
    status: _common_pb2.TaskStatus
    result_json: bytes
    error: str
    def __init__(self, task_index: _Optional[int] = ..., task_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.TaskStatus, str]] = ..., result_json: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...

class GetStageResultsResponse(_message.Message):
    __slots__ = ("results", "job")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[StageTaskResult]
    job: _common_pb2.Job
    def __init__(self, results: _Optional[_Iterable[_Union[StageTaskResult, _Mapping]]] = ..., job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ...) -> None: ...

class TaskProgress(_message.Message):
    __slots__ = ("task_id", "lease_token", "current", "total", "message")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    lease_token: str
    current: float
    total: float
    message: str
    def __init__(self, task_id: _Optional[str] = ..., lease_token: _Optional[str] = ..., current: _Optional[float] = ..., total: _Optional[float] = ..., message: _Optional[str] = ...) -> None: ...

class ReportProgressRequest(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[TaskProgress]
    def __init__(self, reports: _Optional[_Iterable[_Union[TaskProgress, _Mapping]]] = ...) -> None: ...

class ReportProgressResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    def __init__(self, recorded: _Optional[int] = ...) -> None: ...

class CompleteJobRequest(_message.Message):
    __slots__ = ("job_id", "result_json")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    result_json: bytes
    def __init__(self, job_id: _Optional[str] = ..., result_json: _Optional[bytes] = ...) -> None: ...

class CompleteJobResponse(_message.Message):
    __slots__ = ("job", "changed")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    changed: bool
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class FailJobRequest(_message.Message):
    __slots__ = ("job_id", "error")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    error: str
    def __init__(self, job_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class FailJobResponse(_message.Message):
    __slots__ = ("job", "changed")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    changed: bool
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("job_id", "stage", "status", "limit", "page_token")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    stage: int
    status: _common_pb2.TaskStatus
    limit: int
    page_token: str
    def __init__(self, job_id: _Optional[str] = ..., stage: _Optional[int] = ..., status: _Optional[_Union[_common_pb2.TaskStatus, str]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[_common_pb2.Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job", "changed")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    changed: bool
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., changed: _Optional[bool] = ...) -> None: ...

class RedriveJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class RedriveJobResponse(_message.Message):
    __slots__ = ("job", "tasks_requeued")
    JOB_FIELD_NUMBER: _ClassVar[int]
    TASKS_REQUEUED_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    tasks_requeued: int
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., tasks_requeued: _Optional[int] = ...) -> None: ...

class ListEventsRequest(_message.Message):
    __slots__ = ("job_id", "after_seq", "limit", "wait_ms", "job_level_only", "end_only")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    JOB_LEVEL_ONLY_FIELD_NUMBER: _ClassVar[int]
    END_ONLY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_seq: int
    limit: int
    wait_ms: int
    job_level_only: bool
    end_only: bool
    def __init__(self, job_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., limit: _Optional[int] = ..., wait_ms: _Optional[int] = ..., job_level_only: _Optional[bool] = ..., end_only: _Optional[bool] = ...) -> None: ...

class ListEventsResponse(_message.Message):
    __slots__ = ("events", "complete", "job")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_common_pb2.JobEvent]
    complete: bool
    job: _common_pb2.Job
    def __init__(self, events: _Optional[_Iterable[_Union[_common_pb2.JobEvent, _Mapping]]] = ..., complete: _Optional[bool] = ..., job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ...) -> None: ...

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetStatsResponse(_message.Message):
    __slots__ = ("jobs_by_status", "tasks_by_status", "tables_json")
    class JobsByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class TasksByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    JOBS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    TASKS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    TABLES_JSON_FIELD_NUMBER: _ClassVar[int]
    jobs_by_status: _containers.ScalarMap[str, int]
    tasks_by_status: _containers.ScalarMap[str, int]
    tables_json: bytes
    def __init__(self, jobs_by_status: _Optional[_Mapping[str, int]] = ..., tasks_by_status: _Optional[_Mapping[str, int]] = ..., tables_json: _Optional[bytes] = ...) -> None: ...

class CheckDependenciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckDependenciesResponse(_message.Message):
    __slots__ = ("database", "broker", "queue_depths", "dead_letters")
    class QueueDepthsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class DeadLettersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    BROKER_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTHS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    database: str
    broker: str
    queue_depths: _containers.ScalarMap[str, int]
    dead_letters: _containers.ScalarMap[str, int]
    def __init__(self, database: _Optional[str] = ..., broker: _Optional[str] = ..., queue_depths: _Optional[_Mapping[str, int]] = ..., dead_letters: _Optional[_Mapping[str, int]] = ...) -> None: ...

class DeadLetterMessage(_message.Message):
    __slots__ = ("queue", "sequence", "message_id", "body", "reason", "description", "delivery_count", "job_id", "task_id")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_COUNT_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    queue: str
    sequence: str
    message_id: str
    body: bytes
    reason: str
    description: str
    delivery_count: int
    job_id: str
    task_id: str
    def __init__(self, queue: _Optional[str] = ..., sequence: _Optional[str] = ..., message_id: _Optional[str] = ..., body: _Optional[bytes] = ..., reason: _Optional[str] = ..., description: _Optional[str] = ..., delivery_count: _Optional[int] = ..., job_id: _Optional[str] = ..., task_id: _Optional[str] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("queue", "limit")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    queue: str
    limit: int
    def __init__(self, queue: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[DeadLetterMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[DeadLetterMessage, _Mapping]]] = ...) -> None: ...

class ReplayDeadLettersRequest(_message.Message):
    __slots__ = ("queue", "sequences")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    queue: str
    sequences: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, queue: _Optional[str] = ..., sequences: _Optional[_Iterable[str]] = ...) -> None: ...

class ReplayDeadLettersResponse(_message.Message):
    __slots__ = ("replayed",)
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    replayed: int
    def __init__(self, replayed: _Optional[int] = ...) -> None: ...

class FailDeadLettersRequest(_message.Message):
    __slots__ = ("queue", "sequences", "reason")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    queue: str
    sequences: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, queue: _Optional[str] = ..., sequences: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...

class FailDeadLettersResponse(_message.Message):
    __slots__ = ("jobs_failed", "purged")
    JOBS_FAILED_FIELD_NUMBER: _ClassVar[int]
    PURGED_FIELD_NUMBER: _ClassVar[int]
    jobs_failed: int
    purged: int
    def __init__(self, jobs_failed: _Optional[int] = ..., purged: _Optional[int] = ...) -> None: ...

class RedeploySchemaRequest(_message.Message):
    __slots__ = ("confirm",)
    CONFIRM_FIELD_NUMBER: _ClassVar[int]
    confirm: bool
    def __init__(self, confirm: _Optional[bool] = ...) -> None: ...

class RedeploySchemaResponse(_message.Message):
    __slots__ = ("migrations_applied",)
    MIGRATIONS_APPLIED_FIELD_NUMBER: _ClassVar[int]
    migrations_applied: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, migrations_applied: _Optional[_Iterable[int]] = ...) -> None: ...

class JobTypeDefinition(_message.Message):
    __slots__ = ("job_type", "fingerprint", "parameters_schema_json", "definition_json")
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    job_type: str
    fingerprint: str
    parameters_schema_json: bytes
    definition_json: bytes
    def __init__(self, job_type: _Optional[str] = ..., fingerprint: _Optional[str] = ..., parameters_schema_json: _Optional[bytes] = ..., definition_json: _Optional[bytes] = ...) -> None: ...

class RegisterOrchestratorRequest(_message.Message):
    __slots__ = ("orchestrator_id", "host", "version", "job_types", "ttl_seconds", "stopping")
    ORCHESTRATOR_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPES_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STOPPING_FIELD_NUMBER: _ClassVar[int]
    orchestrator_id: str
    host: str
    version: str
    job_types: _containers.RepeatedCompositeFieldContainer[JobTypeDefinition]
    ttl_seconds: int
    stopping: bool
    def __init__(self, orchestrator_id: _Optional[str] = ..., host: _Optional[str] = ..., version: _Optional[str] = ..., job_types: _Optional[_Iterable[_Union[JobTypeDefinition, _Mapping]]] = ..., ttl_seconds: _Optional[int] = ..., stopping: _Optional[bool] = ...) -> None: ...

class RegisterOrchestratorResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: int
    def __init__(self, released: _Optional[int] = ...) -> None: ...

class ParkJobMessageRequest(_message.Message):
    __slots__ = ("job_id", "job_type", "definition", "message_id", "body", "orchestrator_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ORCHESTRATOR_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    job_type: str
    definition: str
    message_id: str
    body: bytes
    orchestrator_id: str
    def __init__(self, job_id: _Optional[str] = ..., job_type: _Optional[str] = ..., definition: _Optional[str] = ..., message_id: _Optional[str] = ..., body: _Optional[bytes] = ..., orchestrator_id: _Optional[str] = ...) -> None: ...

class ParkJobMessageResponse(_message.Message):
    __slots__ = ("parked", "reason")
    PARKED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    parked: bool
    reason: str
    def __init__(self, parked: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class RebaseJobRequest(_message.Message):
    __slots__ = ("job_id", "definition", "total_stages", "default_result")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STAGES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RESULT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    definition: str
    total_stages: int
    default_result: bool
    def __init__(self, job_id: _Optional[str] = ..., definition: _Optional[str] = ..., total_stages: _Optional[int] = ..., default_result: _Optional[bool] = ...) -> None: ...

class RebaseJobResponse(_message.Message):
    __slots__ = ("job", "released")
    JOB_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    released: int
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., released: _Optional[int] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("worker_id", "host", "queues", "task_types", "concurrency", "in_flight", "version", "started_at", "last_seen_at", "state")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPES_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    host: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    task_types: _containers.RepeatedScalarFieldContainer[str]
    concurrency: int
    in_flight: int
    version: str
    started_at: _timestamp_pb2.Timestamp
    last_seen_at: _timestamp_pb2.Timestamp
    state: str
    def __init__(self, worker_id: _Optional[str] = ..., host: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., task_types: _Optional[_Iterable[str]] = ..., concurrency: _Optional[int] = ..., in_flight: _Optional[int] = ..., version: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[str] = ...) -> None: ...

class HeartbeatWorkerRequest(_message.Message):
    __slots__ = ("worker", "ttl_seconds", "stopping")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    STOPPING_FIELD_NUMBER: _ClassVar[int]
    worker: WorkerInfo
    ttl_seconds: int
    stopping: bool
    def __init__(self, worker: _Optional[_Union[WorkerInfo, _Mapping]] = ..., ttl_seconds: _Optional[int] = ..., stopping: _Optional[bool] = ...) -> None: ...

class HeartbeatWorkerResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ("include_gone_seconds",)
    INCLUDE_GONE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    include_gone_seconds: int
    def __init__(self, include_gone_seconds: _Optional[int] = ...) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ...) -> None: ...

class DiagnoseJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class DiagnoseJobResponse(_message.Message):
    __slots__ = ("diagnosis",)
    DIAGNOSIS_FIELD_NUMBER: _ClassVar[int]
    diagnosis: _common_pb2.JobDiagnosis
    def __init__(self, diagnosis: _Optional[_Union[_common_pb2.JobDiagnosis, _Mapping]] = ...) -> None: ...

class CreateScheduleRequest(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: _common_pb2.Schedule
    def __init__(self, schedule: _Optional[_Union[_common_pb2.Schedule, _Mapping]] = ...) -> None: ...

class CreateScheduleResponse(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: _common_pb2.Schedule
    def __init__(self, schedule: _Optional[_Union[_common_pb2.Schedule, _Mapping]] = ...) -> None: ...

class GetScheduleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetScheduleResponse(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: _common_pb2.Schedule
    def __init__(self, schedule: _Optional[_Union[_common_pb2.Schedule, _Mapping]] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ("limit", "page_token")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    limit: int
    page_token: str
    def __init__(self, limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules", "next_page_token")
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[_common_pb2.Schedule]
    next_page_token: str
    def __init__(self, schedules: _Optional[_Iterable[_Union[_common_pb2.Schedule, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SetSchedulePausedRequest(_message.Message):
    __slots__ = ("name", "paused")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    name: str
    paused: bool
    def __init__(self, name: _Optional[str] = ..., paused: _Optional[bool] = ...) -> None: ...

class SetSchedulePausedResponse(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: _common_pb2.Schedule
    def __init__(self, schedule: _Optional[_Union[_common_pb2.Schedule, _Mapping]] = ...) -> None: ...

class DeleteScheduleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteScheduleResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    def __init__(self, deleted: _Optional[bool] = ...) -> None: ...

class TriggerScheduleRequest(_message.Message):
    __slots__ = ("name", "orchestrator_id", "lease_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORCHESTRATOR_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    orchestrator_id: str
    lease_seconds: int
    def __init__(self, name: _Optional[str] = ..., orchestrator_id: _Optional[str] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class TriggerScheduleResponse(_message.Message):
    __slots__ = ("firing",)
    FIRING_FIELD_NUMBER: _ClassVar[int]
    firing: _common_pb2.ScheduleFiring
    def __init__(self, firing: _Optional[_Union[_common_pb2.ScheduleFiring, _Mapping]] = ...) -> None: ...

class ClaimDueFiringsRequest(_message.Message):
    __slots__ = ("orchestrator_id", "job_types", "limit", "lease_seconds")
    ORCHESTRATOR_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    orchestrator_id: str
    job_types: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    lease_seconds: int
    def __init__(self, orchestrator_id: _Optional[str] = ..., job_types: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class ClaimDueFiringsResponse(_message.Message):
    __slots__ = ("firings", "next_due_in_ms")
    FIRINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_IN_MS_FIELD_NUMBER: _ClassVar[int]
    firings: _containers.RepeatedCompositeFieldContainer[_common_pb2.ScheduleFiring]
    next_due_in_ms: int
    def __init__(self, firings: _Optional[_Iterable[_Union[_common_pb2.ScheduleFiring, _Mapping]]] = ..., next_due_in_ms: _Optional[int] = ...) -> None: ...

class RecordFiringRequest(_message.Message):
    __slots__ = ("schedule", "tick_at", "outcome", "job_id", "detail")
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    TICK_AT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    schedule: str
    tick_at: _timestamp_pb2.Timestamp
    outcome: str
    job_id: str
    detail: str
    def __init__(self, schedule: _Optional[str] = ..., tick_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outcome: _Optional[str] = ..., job_id: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class RecordFiringResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: bool
    def __init__(self, recorded: _Optional[bool] = ...) -> None: ...

class ListFiringsRequest(_message.Message):
    __slots__ = ("name", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    limit: int
    def __init__(self, name: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListFiringsResponse(_message.Message):
    __slots__ = ("firings",)
    FIRINGS_FIELD_NUMBER: _ClassVar[int]
    firings: _containers.RepeatedCompositeFieldContainer[_common_pb2.ScheduleFiring]
    def __init__(self, firings: _Optional[_Iterable[_Union[_common_pb2.ScheduleFiring, _Mapping]]] = ...) -> None: ...

class ListQueuesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueInfo(_message.Message):
    __slots__ = ("queue", "depth", "dead_letters", "oldest_age_seconds")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    queue: str
    depth: int
    dead_letters: int
    oldest_age_seconds: float
    def __init__(self, queue: _Optional[str] = ..., depth: _Optional[int] = ..., dead_letters: _Optional[int] = ..., oldest_age_seconds: _Optional[float] = ...) -> None: ...

class ListQueuesResponse(_message.Message):
    __slots__ = ("queues",)
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    queues: _containers.RepeatedCompositeFieldContainer[QueueInfo]
    def __init__(self, queues: _Optional[_Iterable[_Union[QueueInfo, _Mapping]]] = ...) -> None: ...

class ListTaskFailuresRequest(_message.Message):
    __slots__ = ("job_id", "limit")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    limit: int
    def __init__(self, job_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class FailedTaskSample(_message.Message):
    __slots__ = ("task_id", "stage", "task_index", "attempt")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    stage: int
    task_index: int
    attempt: int
    def __init__(self, task_id: _Optional[str] = ..., stage: _Optional[int] = ..., task_index: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class TaskFailureGroup(_message.Message):
    __slots__ = ("error", "tasks", "stages", "min_attempt", "max_attempt", "samples")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    MIN_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    error: str
    tasks: int
    stages: _containers.RepeatedScalarFieldContainer[int]
    min_attempt: int
    max_attempt: int
    samples: _containers.RepeatedCompositeFieldContainer[FailedTaskSample]
    def __init__(self, error: _Optional[str] = ..., tasks: _Optional[int] = ..., stages: _Optional[_Iterable[int]] = ..., min_attempt: _Optional[int] = ..., max_attempt: _Optional[int] = ..., samples: _Optional[_Iterable[_Union[FailedTaskSample, _Mapping]]] = ...) -> None: ...

class ListTaskFailuresResponse(_message.Message):
    __slots__ = ("groups", "scanned", "truncated")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    SCANNED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[TaskFailureGroup]
    scanned: int
    truncated: bool
    def __init__(self, groups: _Optional[_Iterable[_Union[TaskFailureGroup, _Mapping]]] = ..., scanned: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...
