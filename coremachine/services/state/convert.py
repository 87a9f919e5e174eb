"""Rows of the state service <-> protobuf messages."""

from __future__ import annotations

import datetime as dt
import json

from google.protobuf.timestamp_pb2 import Timestamp

from coremachine.common.v1 import common_pb2
from coremachine.services.state.diagnosis import Diagnosis
from coremachine.services.state.rows import EventRow, JobRow, StageRow, TaskRow
from coremachine.services.state.store_models import ClaimedTask, JobView, StageResult
from coremachine.shared.status_codes import job_status_to_proto, task_status_to_proto
from coremachine.state.v1 import state_pb2


def _ts(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def _json(value: object) -> bytes:
    return b"" if value is None else json.dumps(value).encode()


def stage_to_proto(stage: StageRow, default_queue: str) -> common_pb2.StageProgress:
    return common_pb2.StageProgress(
        stage=stage.stage,
        status=stage.status,
        task_count=stage.task_count,
        completed=stage.completed,
        failed=stage.failed,
        cancelled=stage.cancelled,
        remaining=stage.remaining,
        queue=stage.queue or default_queue,
        last_progress_json=_json(stage.last_progress),
    )


def job_to_proto(view: JobView, default_queue: str) -> common_pb2.Job:
    job: JobRow = view.job
    return common_pb2.Job(
        job_id=job.job_id,
        job_type=job.job_type,
        status=job_status_to_proto(job.status),
        stage=job.stage,
        total_stages=job.total_stages,
        parameters_json=_json(job.parameters),
        result_json=_json(job.result_data),
        error=job.error_details or "",
        created_at=_ts(job.created_at),
        updated_at=_ts(job.updated_at),
        completed_at=_ts(job.completed_at),
        stages=[stage_to_proto(s, default_queue) for s in view.stages],
        stage_results_json=_json(job.stage_results),
        definition=job.definition,
        waiting=view.waiting,
        priority=job.priority,
        not_before=_ts(job.not_before) if job.not_before else None,
    )


def task_to_proto(task: TaskRow) -> common_pb2.Task:
    return common_pb2.Task(
        task_id=task.task_id,
        job_id=task.job_id,
        job_type=task.job_type,
        task_type=task.task_type,
        stage=task.stage,
        task_index=task.task_index,
        status=task_status_to_proto(task.status),
        parameters_json=_json(task.parameters),
        result_json=_json(task.result_data),
        error=task.error_details or "",
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        created_at=_ts(task.created_at),
        updated_at=_ts(task.updated_at),
        started_at=_ts(task.started_at),
        completed_at=_ts(task.completed_at),
        progress_json=_json(task.progress),
        worker_id=task.lease_owner or "",
    )


def stage_result_to_proto(result: StageResult) -> state_pb2.StageTaskResult:
    return state_pb2.StageTaskResult(
        task_index=result.task_index,
        task_id=result.task_id,
        status=task_status_to_proto(result.status),
        result_json=(result.result_json or "").encode(),
        error=result.error or "",
    )


def event_to_proto(event: EventRow) -> common_pb2.JobEvent:
    return common_pb2.JobEvent(
        job_id=event.job_id,
        seq=event.seq,
        event_type=event.event_type,
        stage=event.stage or 0,
        task_id=event.task_id or "",
        data_json=_json(event.data),
        created_at=_ts(event.created_at),
    )


def claimed_to_proto(task: ClaimedTask) -> common_pb2.Task:
    """A claimed task with just what the worker needs (the hot path: no timestamps)."""
    return common_pb2.Task(
        task_id=task.task_id,
        job_id=task.job_id,
        job_type=task.job_type,
        task_type=task.task_type,
        stage=task.stage,
        task_index=task.task_index,
        status=common_pb2.TASK_STATUS_PROCESSING,
        parameters_json=task.parameters_json.encode(),
        attempt=task.attempt,
    )


def diagnosis_to_proto(d: Diagnosis, default_queue: str) -> common_pb2.JobDiagnosis:
    job = d.view.job
    s = d.current_stage
    j = d.janitor
    return common_pb2.JobDiagnosis(
        job_id=job.job_id,
        job_type=job.job_type,
        status=job_status_to_proto(job.status),
        stage=job.stage,
        total_stages=job.total_stages,
        summary=d.summary,
        current_stage=common_pb2.DiagnosedStage(
            stage=s.stage,
            planned=s.planned,
            task_count=s.task_count,
            queued=s.queued,
            processing=s.processing,
            completed=s.completed,
            failed=s.failed,
            cancelled=s.cancelled,
            queue=s.queue or (default_queue if s.planned else ""),
        ),
        reasons=[common_pb2.DiagnosisReason(code=r.code, message=r.message) for r in d.reasons],
        unserved_queues=[
            common_pb2.UnservedQueue(queue=u.queue, stage=u.stage, tasks_waiting=u.tasks_waiting)
            for u in d.unserved_queues
        ],
        retrying=[
            common_pb2.RetryingTask(
                task_id=r.task_id,
                task_index=r.task_index,
                attempt=r.attempt,
                due_at=_ts(r.due_at),
                last_error=r.last_error,
            )
            for r in d.retrying
        ],
        running=[
            common_pb2.RunningTask(
                task_id=r.task_id,
                task_index=r.task_index,
                attempt=r.attempt,
                worker_id=r.worker_id,
                worker_state=r.worker_state,
                started_at=_ts(r.started_at),
                running_seconds=r.running_seconds,
                lease_expires_at=_ts(r.lease_expires_at),
            )
            for r in d.running
        ],
        expired_leases=[
            common_pb2.ExpiredLease(
                task_id=e.task_id,
                task_index=e.task_index,
                worker_id=e.worker_id,
                worker_state=e.worker_state,
                lease_expired_at=_ts(e.lease_expired_at),
            )
            for e in d.expired_leases
        ],
        dead_letters=[
            common_pb2.DeadLetterRef(
                queue=x.queue,
                sequence=x.sequence,
                message_id=x.message_id,
                task_id=x.task_id,
                reason=x.reason,
                description=x.description,
            )
            for x in d.dead_letters
        ],
        janitor=common_pb2.JanitorSweep(
            holder=j.holder,
            started_at=_ts(j.started_at),
            finished_at=_ts(j.finished_at),
            error=j.error,
            leases_reclaimed=j.leases_reclaimed,
            stages_advanced=j.stages_advanced,
            overdue=j.overdue,
        ),
        diagnosed_at=_ts(d.diagnosed_at),
        dead_letters_scanned=d.dead_letters_scanned,
        definition_served=d.definition_served,
    )
