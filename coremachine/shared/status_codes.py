"""The one mapping between domain statuses and their protobuf enums.

Every edge that converts (the state service's responses, the state client,
the gateway's HTTP and public gRPC bodies) goes through here. The SDK keeps
its own copy: it installs without the services.
"""

from __future__ import annotations

from coremachine.common.v1 import common_pb2
from coremachine.shared.domain.statuses import JobStatus, TaskStatus

JOB_TO_PROTO: dict[JobStatus, common_pb2.JobStatus] = {
    s: common_pb2.JobStatus.Value(f"JOB_STATUS_{s.value.upper()}") for s in JobStatus
}
TASK_TO_PROTO: dict[TaskStatus, common_pb2.TaskStatus] = {
    s: common_pb2.TaskStatus.Value(f"TASK_STATUS_{s.value.upper()}") for s in TaskStatus
}
_JOB_FROM_PROTO = {v: k for k, v in JOB_TO_PROTO.items()}
_TASK_FROM_PROTO = {v: k for k, v in TASK_TO_PROTO.items()}


def job_status_to_proto(status: str | JobStatus) -> common_pb2.JobStatus:
    return JOB_TO_PROTO[JobStatus(status)]


def job_status_from_proto(value: int) -> JobStatus | None:
    """None for JOB_STATUS_UNSPECIFIED (a filter that is not set)."""
    return _JOB_FROM_PROTO.get(value)  # type: ignore[call-overload]


def task_status_to_proto(status: str | TaskStatus) -> common_pb2.TaskStatus:
    return TASK_TO_PROTO[TaskStatus(status)]


def task_status_from_proto(value: int) -> TaskStatus | None:
    """None for TASK_STATUS_UNSPECIFIED (a filter that is not set)."""
    return _TASK_FROM_PROTO.get(value)  # type: ignore[call-overload]


def job_status_name(value: int) -> str:
    """The wire string of a job status ("completed"); "unspecified" for 0."""
    status = job_status_from_proto(value)
    return status.value if status is not None else "unspecified"


def task_status_name(value: int) -> str:
    status = task_status_from_proto(value)
    return status.value if status is not None else "unspecified"
