from coremachine.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitJobRequest(_message.Message):
    __slots__ = ("job_type", "parameters_json")
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    job_type: str
    parameters_json: bytes
    def __init__(self, job_type: _Optional[str] = ..., parameters_json: _Optional[bytes] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    created: bool
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class ListJobTypesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StageInfo(_message.Message):
    __slots__ = ("name", "task_type", "queue", "fan_out")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    FAN_OUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    task_type: str
    queue: str
    fan_out: str
    def __init__(self, name: _Optional[str] = ..., task_type: _Optional[str] = ..., queue: _Optional[str] = ..., fan_out: _Optional[str] = ...) -> None: ...

class JobTypeInfo(_message.Message):
    __slots__ = ("job_type", "description", "stages", "parameters_schema_json", "fingerprint", "stage_info", "app")
    JOB_TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    STAGE_INFO_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    job_type: str
    description: str
    stages: _containers.RepeatedScalarFieldContainer[str]
    parameters_schema_json: bytes
    fingerprint: str
    stage_info: _containers.RepeatedCompositeFieldContainer[StageInfo]
    app: str
    def __init__(self, job_type: _Optional[str] = ..., description: _Optional[str] = ..., stages: _Optional[_Iterable[str]] = ..., parameters_schema_json: _Optional[bytes] = ..., fingerprint: _Optional[str] = ..., stage_info: _Optional[_Iterable[_Union[StageInfo, _Mapping]]] = ..., app: _Optional[str] = ...) -> None: ...

class ListJobTypesResponse(_message.Message):
    __slots__ = ("job_types",)
    JOB_TYPES_FIELD_NUMBER: _ClassVar[int]
    job_types: _containers.RepeatedCompositeFieldContainer[JobTypeInfo]
    def __init__(self, job_types: _Optional[_Iterable[_Union[JobTypeInfo, _Mapping]]] = ...) -> None: ...

class RebaseJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class RebaseJobResponse(_message.Message):
    __slots__ = ("job", "released")
    JOB_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    job: _common_pb2.Job
    released: int
    def __init__(self, job: _Optional[_Union[_common_pb2.Job, _Mapping]] = ..., released: _Optional[int] = ...) -> None: ...
