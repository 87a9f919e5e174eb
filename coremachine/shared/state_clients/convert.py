"""Protobuf of the state service's API <-> domain objects, on the client side."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from coremachine.common.v1 import common_pb2
from coremachine.shared.domain.jobs import Job, JobTypeDefinition, NewJob, StagePlan, StageProgress
from coremachine.shared.domain.schedules import Firing, Schedule
from coremachine.shared.domain.statuses import StageStatus, TaskStatus
from coremachine.shared.domain.tasks import (
    ClaimedTask,
    ClaimResult,
    StageResult,
    WorkerInfo,
)
from coremachine.shared.errors import InvalidArgument
from coremachine.shared.status_codes import (
    job_status_from_proto,
    job_status_to_proto,
    task_status_from_proto,
)
from coremachine.state.v1 import state_pb2


def _loads(data: bytes) -> Any:
    return json.loads(data) if data else None


def _time(ts: Timestamp, present: bool) -> dt.datetime | None:
    return ts.ToDatetime(tzinfo=dt.UTC) if present else None


def stage_from_proto(stage: common_pb2.StageProgress) -> StageProgress:
    return StageProgress(
        stage=stage.stage,
        status=StageStatus(stage.status),
        task_count=stage.task_count,
        completed=stage.completed,
        failed=stage.failed,
        cancelled=stage.cancelled,
        remaining=stage.remaining,
        queue=stage.queue,
        last_progress=_loads(stage.last_progress_json),
    )


def job_from_proto(job: common_pb2.Job) -> Job:
    status = job_status_from_proto(job.status)
    assert status is not None, "the state service always sets a job's status"
    return Job(
        job_id=job.job_id,
        job_type=job.job_type,
        status=status,
        stage=job.stage,
        total_stages=job.total_stages,
        parameters=_loads(job.parameters_json) or {},
        result=_loads(job.result_json),
        error=job.error,
        stages=tuple(stage_from_proto(s) for s in job.stages),
        stage_summaries=_loads(job.stage_results_json) or {},
        definition=job.definition,
        waiting=job.waiting,
        priority=job.priority,
        not_before=_time(job.not_before, job.HasField("not_before")),
        created_at=_time(job.created_at, job.HasField("created_at")),
        updated_at=_time(job.updated_at, job.HasField("updated_at")),
        completed_at=_time(job.completed_at, job.HasField("completed_at")),
    )


def policy_to_proto(plan: StagePlan) -> state_pb2.StagePolicy:
    policy = plan.policy
    return state_pb2.StagePolicy(
        max_attempts=policy.retry.max_attempts,
        backoff_base_ms=policy.retry.backoff_base_ms,
        backoff_max_ms=policy.retry.backoff_max_ms,
        max_failed_tasks=policy.max_failed_tasks,
        queue=policy.queue,
        task_timeout_ms=policy.task_timeout_ms,
        heartbeat_timeout_ms=policy.heartbeat_timeout_ms,
        previous_results=policy.previous_results,
        concurrency=[state_pb2.ConcurrencyLimit(key=k, limit=n) for k, n in policy.concurrency],
        rate_limit=state_pb2.RateLimit(
            name=policy.rate_limit.name,
            per_second=policy.rate_limit.per_second,
            burst=policy.rate_limit.burst,
        )
        if policy.rate_limit
        else None,
    )


def stage_tasks_to_proto(plan: StagePlan) -> state_pb2.StageTasks:
    return state_pb2.StageTasks(
        total_tasks=plan.total_tasks,
        tasks=new_tasks_to_proto(plan),
        policy=policy_to_proto(plan),
    )


def new_tasks_to_proto(plan: StagePlan) -> list[state_pb2.NewTask]:
    return [
        state_pb2.NewTask(
            task_index=t.task_index, task_type=t.task_type, parameters_json=t.parameters_json
        )
        for t in plan.tasks
    ]


def new_job_to_proto(job: NewJob) -> state_pb2.CreateJobRequest:
    return state_pb2.CreateJobRequest(
        job_id=job.job_id,
        job_type=job.job_type,
        parameters_json=job.parameters_json,
        total_stages=job.total_stages,
        metadata_json=json.dumps({"description": job.description}).encode(),
        first_stage=stage_tasks_to_proto(job.first_stage) if job.first_stage else None,
        default_result=job.default_result,
        definition=job.definition,
        priority=job.priority,
        not_before=_timestamp(job.not_before),
        max_running=job.max_running or 0,
        flow_limited=job.flow_limited,
    )


def claim_from_proto(result: state_pb2.ClaimResult) -> ClaimResult:
    if not result.granted:
        return ClaimResult(result.task_id, None, result.reason)
    task = result.task
    return ClaimResult(
        result.task_id,
        ClaimedTask(
            task_id=task.task_id,
            job_id=task.job_id,
            job_type=task.job_type,
            task_type=task.task_type,
            stage=task.stage,
            task_index=task.task_index,
            attempt=task.attempt,
            parameters_json=task.parameters_json,
            lease_token=result.lease_token,
            queue=result.queue,
            task_timeout_ms=result.task_timeout_ms,
            heartbeat_timeout_ms=result.heartbeat_timeout_ms,
            previous_results=result.previous_results,
        ),
    )


def stage_result_from_proto(result: state_pb2.StageTaskResult) -> StageResult:
    return StageResult(
        task_index=result.task_index,
        task_id=result.task_id,
        status=task_status_from_proto(result.status) or TaskStatus.QUEUED,
        result_json=result.result_json,
        error=result.error,
    )


def definition_to_proto(definition: JobTypeDefinition) -> state_pb2.JobTypeDefinition:
    return state_pb2.JobTypeDefinition(
        job_type=definition.job_type,
        fingerprint=definition.fingerprint,
        parameters_schema_json=json.dumps(definition.parameters_schema).encode(),
        definition_json=json.dumps(definition.definition).encode(),
    )


def _timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def timestamp_of(value: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def worker_to_proto(worker: WorkerInfo) -> state_pb2.WorkerInfo:
    return state_pb2.WorkerInfo(
        worker_id=worker.worker_id,
        host=worker.host,
        queues=list(worker.queues),
        task_types=list(worker.task_types),
        concurrency=worker.concurrency,
        in_flight=worker.in_flight,
        version=worker.version,
        started_at=_timestamp(worker.started_at),
        last_seen_at=_timestamp(worker.last_seen_at),
        state=worker.state,
    )


def worker_from_proto(worker: state_pb2.WorkerInfo) -> WorkerInfo:
    return WorkerInfo(
        worker_id=worker.worker_id,
        host=worker.host,
        queues=tuple(worker.queues),
        task_types=tuple(worker.task_types),
        concurrency=worker.concurrency,
        in_flight=worker.in_flight,
        version=worker.version,
        started_at=_time(worker.started_at, worker.HasField("started_at")),
        last_seen_at=_time(worker.last_seen_at, worker.HasField("last_seen_at")),
        state=worker.state,
    )


def _json(value: Any) -> bytes:
    return b"" if value is None else json.dumps(value).encode()


def job_to_proto(job: Job) -> common_pb2.Job:
    """A domain job as the internal API carries it (the orchestrator's replies)."""
    return common_pb2.Job(
        job_id=job.job_id,
        job_type=job.job_type,
        status=job_status_to_proto(job.status),
        stage=job.stage,
        total_stages=job.total_stages,
        parameters_json=_json(job.parameters),
        result_json=_json(job.result),
        error=job.error,
        created_at=_timestamp(job.created_at),
        updated_at=_timestamp(job.updated_at),
        completed_at=_timestamp(job.completed_at),
        stages=[
            common_pb2.StageProgress(
                stage=s.stage,
                status=s.status.value,
                task_count=s.task_count,
                completed=s.completed,
                failed=s.failed,
                cancelled=s.cancelled,
                remaining=s.remaining,
                queue=s.queue,
                last_progress_json=_json(s.last_progress),
            )
            for s in job.stages
        ],
        stage_results_json=_json(job.stage_summaries),
        definition=job.definition,
        waiting=job.waiting,
        priority=job.priority,
        not_before=_timestamp(job.not_before),
    )


def schedule_to_proto(schedule: Schedule) -> common_pb2.Schedule:
    return common_pb2.Schedule(
        name=schedule.name,
        job_type=schedule.job_type,
        parameters_json=json.dumps(schedule.parameters).encode(),
        priority=schedule.priority,
        cron=schedule.cron or "",
        timezone=schedule.timezone,
        interval_seconds=schedule.interval_seconds or 0.0,
        catch_up=schedule.catch_up,
        catch_up_limit=schedule.catch_up_limit,
        grace_seconds=schedule.grace_seconds,
        overlap=schedule.overlap,
        paused=schedule.paused,
        description=schedule.description,
        next_fire_at=_timestamp(schedule.next_fire_at),
        created_at=_timestamp(schedule.created_at),
        updated_at=_timestamp(schedule.updated_at),
        uid=schedule.uid,
    )


def schedule_from_proto(schedule: common_pb2.Schedule) -> Schedule:
    """A schedule from the wire; unset policies take their defaults."""
    defaults = Schedule(name="", job_type="")
    try:
        parameters = json.loads(schedule.parameters_json) if schedule.parameters_json else {}
    except ValueError:
        raise InvalidArgument("parameters_json is not valid JSON", "parameters") from None
    if not isinstance(parameters, dict):
        raise InvalidArgument("parameters must be a JSON object", "parameters")
    return Schedule(
        name=schedule.name,
        job_type=schedule.job_type,
        parameters=parameters,
        priority=schedule.priority,
        cron=schedule.cron or None,
        timezone=schedule.timezone or defaults.timezone,
        interval_seconds=schedule.interval_seconds or None,
        catch_up=schedule.catch_up or defaults.catch_up,
        catch_up_limit=schedule.catch_up_limit or defaults.catch_up_limit,
        grace_seconds=schedule.grace_seconds
        if schedule.grace_seconds > 0
        else defaults.grace_seconds,
        overlap=schedule.overlap or defaults.overlap,
        paused=schedule.paused,
        description=schedule.description,
        next_fire_at=_time(schedule.next_fire_at, schedule.HasField("next_fire_at")),
        created_at=_time(schedule.created_at, schedule.HasField("created_at")),
        updated_at=_time(schedule.updated_at, schedule.HasField("updated_at")),
        uid=schedule.uid,
    )


def firing_to_proto(firing: Firing) -> common_pb2.ScheduleFiring:
    return common_pb2.ScheduleFiring(
        schedule=firing.schedule,
        tick_at=_timestamp(firing.tick_at),
        kind=firing.kind,
        outcome=firing.outcome,
        job_id=firing.job_id,
        detail=firing.detail,
        missed_count=firing.missed_count,
        missed_until=_timestamp(firing.missed_until),
        created_at=_timestamp(firing.created_at),
        updated_at=_timestamp(firing.updated_at),
        job_type=firing.job_type,
        parameters_json=json.dumps(firing.parameters).encode(),
        priority=firing.priority,
    )


def firing_from_proto(firing: common_pb2.ScheduleFiring) -> Firing:
    return Firing(
        schedule=firing.schedule,
        tick_at=firing.tick_at.ToDatetime(tzinfo=dt.UTC),
        kind=firing.kind,
        outcome=firing.outcome,
        job_id=firing.job_id,
        detail=firing.detail,
        missed_count=firing.missed_count,
        missed_until=_time(firing.missed_until, firing.HasField("missed_until")),
        created_at=_time(firing.created_at, firing.HasField("created_at")),
        updated_at=_time(firing.updated_at, firing.HasField("updated_at")),
        job_type=firing.job_type,
        parameters=_loads(firing.parameters_json) or {},
        priority=firing.priority,
    )
