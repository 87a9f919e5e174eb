"""Internal protobuf jobs -> HTTP JSON bodies and public protobuf messages."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format, struct_pb2

from coremachine.common.v1 import common_pb2
from coremachine.jobs.v1 import jobs_pb2

_STATUS_PREFIX = "JOB_STATUS_"


def status_name(status: int) -> str:
    """Plain lower-case status string ("completed"), never the enum's repr."""
    return common_pb2.JobStatus.Name(status).removeprefix(_STATUS_PREFIX).lower()


def _loads(data: bytes) -> Any:
    return json.loads(data) if data else None


def _iso(ts, present: bool) -> str | None:
    return ts.ToDatetime().isoformat() + "Z" if present else None


def job_to_json(job: common_pb2.Job) -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "job_type": job.job_type,
        "status": status_name(job.status),
        "stage": job.stage,
        "total_stages": job.total_stages,
        "parameters": _loads(job.parameters_json) or {},
        "stages": [
            {
                "stage": s.stage,
                "status": s.status,
                "task_count": s.task_count,
                "completed": s.completed,
                "failed": s.failed,
                "cancelled": s.cancelled,
                "remaining": s.remaining,
            }
            for s in job.stages
        ],
        "result": _loads(job.result_json),
        "error": job.error or None,
        "created_at": _iso(job.created_at, job.HasField("created_at")),
        "updated_at": _iso(job.updated_at, job.HasField("updated_at")),
        "completed_at": _iso(job.completed_at, job.HasField("completed_at")),
    }


def _struct(data: bytes) -> struct_pb2.Struct | None:
    value = _loads(data)
    if not isinstance(value, dict):
        return None
    out = struct_pb2.Struct()
    out.update(value)
    return out


def job_to_public(job: common_pb2.Job) -> jobs_pb2.Job:
    public = jobs_pb2.Job(
        job_id=job.job_id,
        job_type=job.job_type,
        status=job.status,
        stage=job.stage,
        total_stages=job.total_stages,
        error=job.error,
        stages=[
            jobs_pb2.Stage(
                stage=s.stage,
                status=s.status,
                task_count=s.task_count,
                completed=s.completed,
                failed=s.failed,
                cancelled=s.cancelled,
                remaining=s.remaining,
            )
            for s in job.stages
        ],
    )
    for name in ("created_at", "updated_at", "completed_at"):
        if job.HasField(name):
            getattr(public, name).CopyFrom(getattr(job, name))
    if (params := _struct(job.parameters_json)) is not None:
        public.parameters.CopyFrom(params)
    if job.result_json:
        json_format.ParseDict(_loads(job.result_json), public.result)
    return public


def struct_to_json_bytes(value: struct_pb2.Struct) -> bytes:
    return json.dumps(json_format.MessageToDict(value)).encode()
