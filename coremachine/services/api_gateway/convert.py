"""Internal protobuf messages -> HTTP JSON bodies and public protobuf messages, and back."""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf import json_format, struct_pb2

from coremachine.common.v1 import common_pb2
from coremachine.jobs.v1 import jobs_pb2
from coremachine.orchestrator.v1 import orchestrator_pb2
from coremachine.shared.domain.priorities import DEFAULT_PRIORITY
from coremachine.shared.status_codes import (
    JOB_TO_PROTO,
    TASK_TO_PROTO,
    job_status_name,
    task_status_name,
)
from coremachine.state.v1 import state_pb2

# Wire strings of the statuses ("completed"), as HTTP filters accept them.
JOB_STATUSES: dict[str, common_pb2.JobStatus] = {s.value: v for s, v in JOB_TO_PROTO.items()}
TASK_STATUSES: dict[str, common_pb2.TaskStatus] = {s.value: v for s, v in TASK_TO_PROTO.items()}
# Bodies of dead letters are shown to operators, not replayed from the listing.
_BODY_PREVIEW_CHARS = 2000


def _loads(data: bytes) -> Any:
    return json.loads(data) if data else None


def _iso(ts, present: bool) -> str | None:
    return ts.ToDatetime().isoformat() + "Z" if present else None


def job_to_json(job: common_pb2.Job, *, stage_results: bool = False) -> dict[str, Any]:
    body = {
        "job_id": job.job_id,
        "job_type": job.job_type,
        "status": job_status_name(job.status),
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
                "queue": s.queue,
                "last_progress": _loads(s.last_progress_json),
            }
            for s in job.stages
        ],
        "result": _loads(job.result_json),
        "error": job.error or None,
        "definition": job.definition or None,
        "waiting": job.waiting or None,
        "priority": job.priority,
        "not_before": _iso(job.not_before, job.HasField("not_before")),
        "created_at": _iso(job.created_at, job.HasField("created_at")),
        "updated_at": _iso(job.updated_at, job.HasField("updated_at")),
        "completed_at": _iso(job.completed_at, job.HasField("completed_at")),
    }
    if stage_results:
        body["stage_results"] = _loads(job.stage_results_json)
    return body


def task_to_json(task: common_pb2.Task) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "job_id": task.job_id,
        "job_type": task.job_type,
        "task_type": task.task_type,
        "stage": task.stage,
        "task_index": task.task_index,
        "status": task_status_name(task.status),
        "attempt": task.attempt,
        "max_attempts": task.max_attempts,
        "parameters": _loads(task.parameters_json),
        "result": _loads(task.result_json),
        "error": task.error or None,
        "created_at": _iso(task.created_at, task.HasField("created_at")),
        "updated_at": _iso(task.updated_at, task.HasField("updated_at")),
        "started_at": _iso(task.started_at, task.HasField("started_at")),
        "completed_at": _iso(task.completed_at, task.HasField("completed_at")),
        "progress": _loads(task.progress_json),
        "worker_id": task.worker_id or None,
    }


def event_to_json(event: common_pb2.JobEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "event_type": event.event_type,
        "stage": event.stage or None,
        "task_id": event.task_id or None,
        "data": _loads(event.data_json),
        "created_at": _iso(event.created_at, event.HasField("created_at")),
    }


def dead_letter_to_json(letter: state_pb2.DeadLetterMessage) -> dict[str, Any]:
    body = letter.body.decode("utf-8", errors="replace")
    return {
        "queue": letter.queue,
        "sequence": letter.sequence,
        "message_id": letter.message_id,
        "reason": letter.reason,
        "description": letter.description,
        "delivery_count": letter.delivery_count,
        "job_id": letter.job_id or None,
        "task_id": letter.task_id or None,
        "body_preview": body[:_BODY_PREVIEW_CHARS],
    }


def failures_to_json(report: state_pb2.ListTaskFailuresResponse) -> dict[str, Any]:
    return {
        "groups": [
            {
                "error": g.error,
                "tasks": g.tasks,
                "stages": list(g.stages),
                "min_attempt": g.min_attempt,
                "max_attempt": g.max_attempt,
                "samples": [
                    {
                        "task_id": t.task_id,
                        "stage": t.stage,
                        "task_index": t.task_index,
                        "attempt": t.attempt,
                    }
                    for t in g.samples
                ],
            }
            for g in report.groups
        ],
        "scanned": report.scanned,
        "truncated": report.truncated,
    }


def queue_to_json(queue: state_pb2.QueueInfo) -> dict[str, Any]:
    return {
        "queue": queue.queue,
        "depth": queue.depth,
        "dead_letters": queue.dead_letters,
        "oldest_age_seconds": (
            round(queue.oldest_age_seconds, 3) if queue.HasField("oldest_age_seconds") else None
        ),
    }


def stats_to_json(stats: state_pb2.GetStatsResponse) -> dict[str, Any]:
    return {
        "jobs_by_status": dict(stats.jobs_by_status),
        "tasks_by_status": dict(stats.tasks_by_status),
        "tables": _loads(stats.tables_json),
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
                queue=s.queue,
                last_progress=_struct(s.last_progress_json),
            )
            for s in job.stages
        ],
        definition=job.definition,
        waiting=job.waiting,
        priority=job.priority,
    )
    for name in ("created_at", "updated_at", "completed_at", "not_before"):
        if job.HasField(name):
            getattr(public, name).CopyFrom(getattr(job, name))
    if (params := _struct(job.parameters_json)) is not None:
        public.parameters.CopyFrom(params)
    if job.result_json:
        json_format.ParseDict(_loads(job.result_json), public.result)
    return public


def _value(data: bytes, out: struct_pb2.Value) -> None:
    if data:
        json_format.ParseDict(_loads(data), out)


def task_to_public(task: common_pb2.Task) -> jobs_pb2.Task:
    public = jobs_pb2.Task(
        task_id=task.task_id,
        job_id=task.job_id,
        task_type=task.task_type,
        stage=task.stage,
        task_index=task.task_index,
        status=task.status,
        attempt=task.attempt,
        error=task.error,
        progress=_struct(task.progress_json),
        worker_id=task.worker_id,
    )
    _value(task.parameters_json, public.parameters)
    _value(task.result_json, public.result)
    for name in ("created_at", "updated_at"):
        if task.HasField(name):
            getattr(public, name).CopyFrom(getattr(task, name))
    return public


def event_to_public(event: common_pb2.JobEvent) -> jobs_pb2.JobEvent:
    public = jobs_pb2.JobEvent(
        seq=event.seq, event_type=event.event_type, stage=event.stage, task_id=event.task_id
    )
    if (data := _struct(event.data_json)) is not None:
        public.data.CopyFrom(data)
    if event.HasField("created_at"):
        public.created_at.CopyFrom(event.created_at)
    return public


def job_type_to_public(info: orchestrator_pb2.JobTypeInfo) -> jobs_pb2.JobType:
    public = jobs_pb2.JobType(
        job_type=info.job_type,
        description=info.description,
        stages=list(info.stages),
        fingerprint=info.fingerprint,
        stage_info=[
            jobs_pb2.JobTypeStage(
                name=s.name, task_type=s.task_type, queue=s.queue, fan_out=s.fan_out
            )
            for s in info.stage_info
        ],
    )
    if (schema := _struct(info.parameters_schema_json)) is not None:
        public.parameters_schema.CopyFrom(schema)
    return public


def job_type_to_json(info: orchestrator_pb2.JobTypeInfo) -> dict[str, Any]:
    return {
        "job_type": info.job_type,
        "description": info.description,
        "app": info.app or None,
        "fingerprint": info.fingerprint,
        "stages": [
            {"name": s.name, "task_type": s.task_type, "queue": s.queue, "fan_out": s.fan_out}
            for s in info.stage_info
        ],
        "parameters_schema": _loads(info.parameters_schema_json),
    }


def _integral_floats_to_ints(value: Any) -> Any:
    # Struct holds every number as a double: `3.0` was sent as `3`. Without
    # this, the same parameters over gRPC and HTTP would hash to different job ids.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_floats_to_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_floats_to_ints(v) for v in value]
    return value


def struct_to_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct of parameters as the JSON object an HTTP client would have sent."""
    return _integral_floats_to_ints(json_format.MessageToDict(value))


def worker_to_json(worker: state_pb2.WorkerInfo) -> dict[str, Any]:
    return {
        "worker_id": worker.worker_id,
        "host": worker.host,
        "state": worker.state,
        "queues": list(worker.queues),
        "task_types": list(worker.task_types),
        "concurrency": worker.concurrency,
        "in_flight": worker.in_flight,
        "version": worker.version,
        "started_at": _iso(worker.started_at, worker.HasField("started_at")),
        "last_seen_at": _iso(worker.last_seen_at, worker.HasField("last_seen_at")),
    }


def worker_to_public(worker: state_pb2.WorkerInfo) -> jobs_pb2.Worker:
    public = jobs_pb2.Worker(
        worker_id=worker.worker_id,
        host=worker.host,
        queues=list(worker.queues),
        task_types=list(worker.task_types),
        concurrency=worker.concurrency,
        in_flight=worker.in_flight,
        version=worker.version,
        state=worker.state,
    )
    if worker.HasField("started_at"):
        public.started_at.CopyFrom(worker.started_at)
    if worker.HasField("last_seen_at"):
        public.last_seen_at.CopyFrom(worker.last_seen_at)
    return public


def diagnosis_to_json(diagnosis: common_pb2.JobDiagnosis) -> dict[str, Any]:
    """The diagnosis as JSON: field names as in the proto, statuses as wire strings."""
    body = json_format.MessageToDict(
        diagnosis,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    body["status"] = job_status_name(diagnosis.status)
    return body


# -- schedules ----------------------------------------------------------------

_SCHEDULE_FIELDS = (
    "name", "job_type", "cron", "timezone", "interval_seconds", "catch_up", "catch_up_limit",
    "grace_seconds", "overlap", "paused", "description",
)  # fmt: skip


def schedule_to_json(schedule: common_pb2.Schedule) -> dict[str, Any]:
    body: dict[str, Any] = {name: getattr(schedule, name) for name in _SCHEDULE_FIELDS}
    body["cron"] = schedule.cron or None
    body["interval_seconds"] = schedule.interval_seconds or None
    body["parameters"] = _loads(schedule.parameters_json) or {}
    body["priority"] = schedule.priority
    for name in ("next_fire_at", "created_at", "updated_at"):
        body[name] = _iso(getattr(schedule, name), schedule.HasField(name))
    return body


def firing_to_json(firing: common_pb2.ScheduleFiring) -> dict[str, Any]:
    return {
        "tick_at": _iso(firing.tick_at, firing.HasField("tick_at")),
        "kind": firing.kind,
        "outcome": firing.outcome,
        "job_id": firing.job_id or None,
        "detail": firing.detail or None,
        "missed_count": firing.missed_count or None,
        "missed_until": _iso(firing.missed_until, firing.HasField("missed_until")),
        "created_at": _iso(firing.created_at, firing.HasField("created_at")),
    }


def schedule_to_public(schedule: common_pb2.Schedule) -> jobs_pb2.Schedule:
    public = jobs_pb2.Schedule(
        **{name: getattr(schedule, name) for name in _SCHEDULE_FIELDS},
        priority=schedule.priority,
    )
    if (params := _struct(schedule.parameters_json)) is not None:
        public.parameters.CopyFrom(params)
    for name in ("next_fire_at", "created_at", "updated_at"):
        if schedule.HasField(name):
            getattr(public, name).CopyFrom(getattr(schedule, name))
    return public


def firing_to_public(firing: common_pb2.ScheduleFiring) -> jobs_pb2.ScheduleFiring:
    public = jobs_pb2.ScheduleFiring(
        kind=firing.kind,
        outcome=firing.outcome,
        job_id=firing.job_id,
        detail=firing.detail,
        missed_count=firing.missed_count,
    )
    for name in ("tick_at", "missed_until", "created_at"):
        if firing.HasField(name):
            getattr(public, name).CopyFrom(getattr(firing, name))
    return public


def schedule_from_public(schedule: jobs_pb2.Schedule) -> common_pb2.Schedule:
    """A public schedule as the internal API carries it (unset priority: 5)."""
    internal = common_pb2.Schedule(
        **{name: getattr(schedule, name) for name in _SCHEDULE_FIELDS},
        parameters_json=json.dumps(struct_to_dict(schedule.parameters)).encode(),
        priority=schedule.priority if schedule.HasField("priority") else DEFAULT_PRIORITY,
    )
    return internal
