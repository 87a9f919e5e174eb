import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_QUEUED: _ClassVar[JobStatus]
    JOB_STATUS_PROCESSING: _ClassVar[JobStatus]
    JOB_STATUS_COMPLETED: _ClassVar[JobStatus]
    JOB_STATUS_COMPLETED_WITH_ERRORS: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_CANCELLED: _ClassVar[JobStatus]

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_QUEUED: _ClassVar[TaskStatus]
    TASK_STATUS_PROCESSING: _ClassVar[TaskStatus]
    TASK_STATUS_COMPLETED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELLED: _ClassVar[TaskStatus]
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_QUEUED: JobStatus
JOB_STATUS_PROCESSING: JobStatus
JOB_STATUS_COMPLETED: JobStatus
JOB_STATUS_COMPLETED_WITH_ERRORS: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_CANCELLED: JobStatus
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_QUEUED: TaskStatus
TASK_STATUS_PROCESSING: TaskStatus
TASK_STATUS_COMPLETED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_CANCELLED: TaskStatus

class StageProgress(_message.Message):
    __slots__ = ("stage", "status", "task_count", "completed", "failed", "cancelled", "remaining", "queue", "last_progress_json")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    LAST_PROGRESS_JSON_FIELD_NUMBER: _ClassVar[int]
    stage: int
    status: str
    task_count: int
    completed: int
    failed: int
    cancelled: int
    remaining: int
    queue: str
    last_progress_json: bytes
    def __init__(self, stage: _Optional[int] = ..., status: _Optional[str] = ..., task_count: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., remaining: _Optional[int] = ..., queue: _Optional[str] = ..., last_progress_json: _Optional[bytes] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "job_type", "status", "stage", "total_stages", "parameters_json", "result_json", "error", "created_at", "updated_at", "completed_at", "stages", "stage_results_json", "definition", "waiting")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STAGES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    STAGE_RESULTS_JSON_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    job_type: str
    status: JobStatus
    stage: int
    total_stages: int
    parameters_json: bytes
    result_json: bytes
    error: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    stages: _containers.RepeatedCompositeFieldContainer[StageProgress]
    stage_results_json: bytes
    definition: str
    waiting: str
    def __init__(self, job_id: _Optional[str] = ..., job_type: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., stage: _Optional[int] = ..., total_stages: _Optional[int] = ..., parameters_json: _Optional[bytes] = ..., result_json: _Optional[bytes] = ..., error: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stages: _Optional[_Iterable[_Union[StageProgress, _Mapping]]] = ..., stage_results_json: _Optional[bytes] = ..., definition: _Optional[str] = ..., waiting: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "job_id", "job_type", "task_type", "stage", "task_index", "status", "parameters_json", "result_json", "error", "attempt", "max_attempts", "created_at", "updated_at", "started_at", "completed_at", "progress_json", "worker_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_JSON_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    job_id: str
    job_type: str
    task_type: str
    stage: int
    task_index: int
    status: TaskStatus
    parameters_json: bytes
    result_json: bytes
    error: str
    attempt: int
    max_attempts: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    progress_json: bytes
    worker_id: str
    def __init__(self, task_id: _Optional[str] = ..., job_id: _Optional[str] = ..., job_type: _Optional[str] = ..., task_type: _Optional[str] = ..., stage: _Optional[int] = ..., task_index: _Optional[int] = ..., status: _Optional[_Union[TaskStatus, str]] = ..., parameters_json: _Optional[bytes] = ..., result_json: _Optional[bytes] = ..., error: _Optional[str] = ..., attempt: _Optional[int] = ..., max_attempts: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress_json: _Optional[bytes] = ..., worker_id: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "seq", "event_type", "stage", "task_id", "data_json", "created_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    seq: int
    event_type: str
    stage: int
    task_id: str
    data_json: bytes
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., seq: _Optional[int] = ..., event_type: _Optional[str] = ..., stage: _Optional[int] = ..., task_id: _Optional[str] = ..., data_json: _Optional[bytes] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobDiagnosis(_message.Message):
    __slots__ = ("job_id", "job_type", "status", "stage", "total_stages", "summary", "current_stage", "reasons", "unserved_queues", "retrying", "running", "expired_leases", "dead_letters", "janitor", "diagnosed_at", "dead_letters_scanned", "definition_served")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STAGES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STAGE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    UNSERVED_QUEUES_FIELD_NUMBER: _ClassVar[int]
    RETRYING_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_LEASES_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    JANITOR_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSED_AT_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_SCANNED_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_SERVED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    job_type: str
    status: JobStatus
    stage: int
    total_stages: int
    summary: str
    current_stage: DiagnosedStage
    reasons: _containers.RepeatedCompositeFieldContainer[DiagnosisReason]
    unserved_queues: _containers.RepeatedCompositeFieldContainer[UnservedQueue]
    retrying: _containers.RepeatedCompositeFieldContainer[RetryingTask]
    running: _containers.RepeatedCompositeFieldContainer[RunningTask]
    expired_leases: _containers.RepeatedCompositeFieldContainer[ExpiredLease]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetterRef]
    janitor: JanitorSweep
    diagnosed_at: _timestamp_pb2.Timestamp
    dead_letters_scanned: int
    definition_served: bool
    def __init__(self, job_id: _Optional[str] = ..., job_type: _Optional[str] = ..., status: _Optional[_Union[JobStatus, str]] = ..., stage: _Optional[int] = ..., total_stages: _Optional[int] = ..., summary: _Optional[str] = ..., current_stage: _Optional[_Union[DiagnosedStage, _Mapping]] = ..., reasons: _Optional[_Iterable[_Union[DiagnosisReason, _Mapping]]] = ..., unserved_queues: _Optional[_Iterable[_Union[UnservedQueue, _Mapping]]] = ..., retrying: _Optional[_Iterable[_Union[RetryingTask, _Mapping]]] = ..., running: _Optional[_Iterable[_Union[RunningTask, _Mapping]]] = ..., expired_leases: _Optional[_Iterable[_Union[ExpiredLease, _Mapping]]] = ..., dead_letters: _Optional[_Iterable[_Union[DeadLetterRef, _Mapping]]] = ..., janitor: _Optional[_Union[JanitorSweep, _Mapping]] = ..., diagnosed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., dead_letters_scanned: _Optional[int] = ..., definition_served: _Optional[bool] = ...) -> None: ...

class DiagnosedStage(_message.Message):
    __slots__ = ("stage", "planned", "task_count", "queued", "processing", "completed", "failed", "cancelled", "queue")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PLANNED_FIELD_NUMBER: _ClassVar[int]
    TASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    stage: int
    planned: bool
    task_count: int
    queued: int
    processing: int
    completed: int
    failed: int
    cancelled: int
    queue: str
    def __init__(self, stage: _Optional[int] = ..., planned: _Optional[bool] = ..., task_count: _Optional[int] = ..., queued: _Optional[int] = ..., processing: _Optional[int] = ..., completed: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ..., queue: _Optional[str] = ...) -> None: ...

class DiagnosisReason(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class UnservedQueue(_message.Message):
    __slots__ = ("queue", "stage", "tasks_waiting")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TASKS_WAITING_FIELD_NUMBER: _ClassVar[int]
    queue: str
    stage: int
    tasks_waiting: int
    def __init__(self, queue: _Optional[str] = ..., stage: _Optional[int] = ..., tasks_waiting: _Optional[int] = ...) -> None: ...

class RetryingTask(_message.Message):
    __slots__ = ("task_id", "task_index", "attempt", "due_at", "last_error")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DUE_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_index: int
    attempt: int
    due_at: _timestamp_pb2.Timestamp
    last_error: str
    def __init__(self, task_id: _Optional[str] = ..., task_index: _Optional[int] = ..., attempt: _Optional[int] = ..., due_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ...) -> None: ...

class RunningTask(_message.Message):
    __slots__ = ("task_id", "task_index", "attempt", "worker_id", "worker_state", "started_at", "running_seconds", "lease_expires_at")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_INDEX_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_index: int
    attempt: int
    worker_id: str
    worker_state: str
    started_at: _timestamp_pb2.Timestamp
    running_seconds: float
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, task_id: _Optional[str] = ..., task_index: _Optional[int] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., worker_state: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., running_seconds: _Optional[float] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExpiredLease(_message.Message):
    __slots__ = ("task_id", "task_index", "worker_id", "worker_state", "lease_expired_at")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_INDEX_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_STATE_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRED_AT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task_index: int
    worker_id: str
    worker_state: str
    lease_expired_at: _timestamp_pb2.Timestamp
    def __init__(self, task_id: _Optional[str] = ..., task_index: _Optional[int] = ..., worker_id: _Optional[str] = ..., worker_state: _Optional[str] = ..., lease_expired_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeadLetterRef(_message.Message):
    __slots__ = ("queue", "sequence", "message_id", "task_id", "reason", "description")
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    queue: str
    sequence: str
    message_id: str
    task_id: str
    reason: str
    description: str
    def __init__(self, queue: _Optional[str] = ..., sequence: _Optional[str] = ..., message_id: _Optional[str] = ..., task_id: _Optional[str] = ..., reason: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class JanitorSweep(_message.Message):
    __slots__ = ("holder", "started_at", "finished_at", "error", "leases_reclaimed", "stages_advanced", "overdue")
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEASES_RECLAIMED_FIELD_NUMBER: _ClassVar[int]
    STAGES_ADVANCED_FIELD_NUMBER: _ClassVar[int]
    OVERDUE_FIELD_NUMBER: _ClassVar[int]
    holder: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    error: str
    leases_reclaimed: int
    stages_advanced: int
    overdue: bool
    def __init__(self, holder: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., leases_reclaimed: _Optional[int] = ..., stages_advanced: _Optional[int] = ..., overdue: _Optional[bool] = ...) -> None: ...
