"""Protobuf <-> SDK objects: the only module that reads or builds messages' fields."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from coremachine.common.v1 import common_pb2
from coremachine.jobs.v1 import jobs_pb2
from coremachine_sdk._errors import InvalidParameters
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


def _plain(value: Any) -> Any:
    """JSON from a Struct, with whole floats turned back into ints.

    google.protobuf.Struct stores every number as a double, so `n=100` comes
    back as 100.0; users expect the integer they sent.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _struct(message: struct_pb2.Struct) -> dict[str, Any]:
    return _plain(json_format.MessageToDict(message))


def _value(parent: Any, name: str) -> Any:
    if not parent.HasField(name):
        return None
    return _plain(json_format.MessageToDict(getattr(parent, name)))


def _time(parent: Any, name: str) -> datetime | None:
    if not parent.HasField(name):
        return None
    ts: timestamp_pb2.Timestamp = getattr(parent, name)
    return ts.ToDatetime(tzinfo=UTC)


def _job_status(value: int) -> JobStatus:
    try:
        name = common_pb2.JobStatus.Name(value).removeprefix("JOB_STATUS_").lower()
        return JobStatus(name)
    except ValueError:
        return JobStatus.UNKNOWN


def _task_status(value: int) -> TaskStatus:
    try:
        name = common_pb2.TaskStatus.Name(value).removeprefix("TASK_STATUS_").lower()
        return TaskStatus(name)
    except ValueError:
        return TaskStatus.UNKNOWN


def job_status_to_proto(status: JobStatus | str | None) -> common_pb2.JobStatus:
    """The wire enum for a job status filter (UNSPECIFIED = any)."""
    if status is None:
        return common_pb2.JOB_STATUS_UNSPECIFIED
    try:
        return common_pb2.JobStatus.Value(f"JOB_STATUS_{JobStatus(status).name}")  # type: ignore[return-value]
    except ValueError:
        raise InvalidParameters(f"unknown job status {status!r}", field="status") from None


def task_status_to_proto(status: TaskStatus | str | None) -> common_pb2.TaskStatus:
    """The wire enum for a task status filter (UNSPECIFIED = any)."""
    if status is None:
        return common_pb2.TASK_STATUS_UNSPECIFIED
    try:
        return common_pb2.TaskStatus.Value(f"TASK_STATUS_{TaskStatus(status).name}")  # type: ignore[return-value]
    except ValueError:
        raise InvalidParameters(f"unknown task status {status!r}", field="status") from None


def parameters_to_struct(parameters: dict[str, Any]) -> struct_pb2.Struct:
    """Job parameters as a Struct (numbers travel as doubles: exact up to 2**53)."""
    out = struct_pb2.Struct()
    try:
        out.update(parameters)
    except (ValueError, TypeError) as exc:
        raise InvalidParameters(
            f"parameters must be JSON values: {exc}", field="parameters"
        ) from None
    return out


def stage_from_proto(stage: jobs_pb2.Stage) -> Stage:
    return Stage(
        stage=stage.stage,
        status=stage.status,
        task_count=stage.task_count,
        completed=stage.completed,
        failed=stage.failed,
        cancelled=stage.cancelled,
        remaining=stage.remaining,
        queue=stage.queue,
        last_progress=_struct(stage.last_progress) if stage.HasField("last_progress") else None,
    )


def job_from_proto(job: jobs_pb2.Job) -> Job:
    return Job(
        job_id=job.job_id,
        job_type=job.job_type,
        status=_job_status(job.status),
        stage=job.stage,
        total_stages=job.total_stages,
        parameters=_struct(job.parameters),
        result=_value(job, "result"),
        error=job.error or None,
        created_at=_time(job, "created_at"),
        updated_at=_time(job, "updated_at"),
        completed_at=_time(job, "completed_at"),
        stages=tuple(stage_from_proto(s) for s in job.stages),
        definition=job.definition,
        waiting=job.waiting or None,
    )


def task_from_proto(task: jobs_pb2.Task) -> Task:
    return Task(
        task_id=task.task_id,
        job_id=task.job_id,
        task_type=task.task_type,
        stage=task.stage,
        task_index=task.task_index,
        status=_task_status(task.status),
        attempt=task.attempt,
        parameters=_value(task, "parameters"),
        result=_value(task, "result"),
        error=task.error or None,
        created_at=_time(task, "created_at"),
        updated_at=_time(task, "updated_at"),
        progress=_struct(task.progress) if task.HasField("progress") else None,
        worker_id=task.worker_id or None,
    )


def event_from_proto(event: jobs_pb2.JobEvent) -> JobEvent:
    return JobEvent(
        seq=event.seq,
        event_type=event.event_type,
        stage=event.stage,
        task_id=event.task_id or None,
        data=_struct(event.data),
        created_at=_time(event, "created_at"),
    )


def job_type_from_proto(job_type: jobs_pb2.JobType) -> JobType:
    return JobType(
        job_type=job_type.job_type,
        description=job_type.description,
        stages=tuple(job_type.stages),
        parameters_schema=_struct(job_type.parameters_schema),
        fingerprint=job_type.fingerprint,
        stage_info=tuple(
            {"name": s.name, "task_type": s.task_type, "queue": s.queue, "fan_out": s.fan_out}
            for s in job_type.stage_info
        ),
    )


def worker_from_proto(worker: jobs_pb2.Worker) -> Worker:
    return Worker(
        worker_id=worker.worker_id,
        host=worker.host,
        state=worker.state,
        queues=tuple(worker.queues),
        task_types=tuple(worker.task_types),
        concurrency=worker.concurrency,
        in_flight=worker.in_flight,
        version=worker.version,
        started_at=_time(worker, "started_at"),
        last_seen_at=_time(worker, "last_seen_at"),
    )


def diagnosis_from_proto(diagnosis: common_pb2.JobDiagnosis) -> Diagnosis:
    details = json_format.MessageToDict(
        diagnosis, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for key in ("job_id", "job_type", "status", "stage", "total_stages", "summary", "reasons"):
        details.pop(key, None)
    return Diagnosis(
        job_id=diagnosis.job_id,
        job_type=diagnosis.job_type,
        status=_job_status(diagnosis.status),
        stage=diagnosis.stage,
        total_stages=diagnosis.total_stages,
        summary=diagnosis.summary,
        reasons=tuple(DiagnosisReason(r.code, r.message) for r in diagnosis.reasons),
        details=details,
    )
