"""CoreMachine's Python SDK: typed sync and asyncio clients of the public gRPC API."""

from coremachine_sdk._async_client import AsyncClient
from coremachine_sdk._channel import DEFAULT_ADDRESS, TlsOptions
from coremachine_sdk._errors import (
    Conflict,
    CoreMachineError,
    InvalidParameters,
    JobNotFound,
    PermissionDenied,
    Timeout,
    Unauthorized,
    Unavailable,
)
from coremachine_sdk._models import (
    Diagnosis,
    DiagnosisReason,
    Job,
    JobEvent,
    JobStatus,
    JobType,
    Stage,
    Task,
    TaskStatus,
    Worker,
)
from coremachine_sdk._sync_client import Client

__all__ = [
    "DEFAULT_ADDRESS",
    "AsyncClient",
    "Client",
    "Conflict",
    "CoreMachineError",
    "Diagnosis",
    "DiagnosisReason",
    "InvalidParameters",
    "Job",
    "JobEvent",
    "JobNotFound",
    "JobStatus",
    "JobType",
    "PermissionDenied",
    "Stage",
    "Task",
    "TaskStatus",
    "Timeout",
    "TlsOptions",
    "Unauthorized",
    "Unavailable",
    "Worker",
]
