"""The state-client port in memory: the state service's rules without PostgreSQL.

For unit tests of the orchestrator and the worker. It keeps the rules the
consumers rely on — idempotent job and stage creation, claims fenced by
attempt and lease token, outcomes counted once into their stage, the stage
barrier and failure tolerance, retries, cancellation — and records the
messages the real service would send (`sent`), so tests can assert on them.
It passes the same contract suite as the gRPC adapter; it is not durable and
not meant for concurrency across processes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from coremachine.shared.domain.ids import scheduled_job_id, task_id_for
from coremachine.shared.domain.jobs import (
    Job,
    JobTypeDefinition,
    NewJob,
    StagePlan,
    StagePolicy,
    StageProgress,
)
from coremachine.shared.domain.schedules import (
    Firing,
    Schedule,
    ScheduleError,
    check_schedule,
    due_ticks,
    first_tick,
)
from coremachine.shared.domain.statuses import JobStatus, StageStatus, TaskStatus
from coremachine.shared.domain.tasks import (
    ClaimedTask,
    ClaimResult,
    FailedTask,
    LeaseRenewal,
    OutcomeAck,
    ProgressReport,
    StageResult,
    TaskClaim,
    TaskLease,
    TaskOutcome,
    WorkerInfo,
)
from coremachine.shared.errors import Conflict, InvalidArgument, NotFound
from coremachine.shared.job_summary import default_summary


@dataclass
class SentMessage:
    """A message the state service would have written with a change."""

    queue: str
    kind: str  # "stage_ready", "finalize_job" or "task"
    job_id: str
    stage: int = 0
    task_id: str = ""
    attempt: int = 0
    definition: str = ""


@dataclass
class _Stage:
    task_count: int
    remaining: int
    policy: StagePolicy
    status: StageStatus = StageStatus.RUNNING
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    last_progress: dict[str, Any] | None = None


@dataclass
class _Task:
    task_id: str
    job_id: str
    stage: int
    task_index: int
    task_type: str
    parameters_json: bytes
    status: TaskStatus = TaskStatus.QUEUED
    attempt: int = 1
    lease_token: str = ""
    worker_id: str = ""
    result_json: bytes = b""
    error: str = ""
    progress: dict[str, Any] | None = None


@dataclass
class _Job:
    new: NewJob
    parameters: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    stage: int = 1
    result: Any = None
    error: str = ""
    summaries: dict[str, Any] = field(default_factory=dict)
    stages: dict[int, _Stage] = field(default_factory=dict)
    definition: str = ""
    default_result: bool = False
    total_stages: int = 1
    waiting: str = ""


class InMemoryStateClient:
    """StateClient in memory (see the module docstring)."""

    def __init__(self, tasks_queue: str = "tasks", jobs_queue: str = "jobs") -> None:
        self.tasks_queue = tasks_queue
        self.jobs_queue = jobs_queue
        self.jobs: dict[str, _Job] = {}
        self.tasks: dict[str, _Task] = {}
        self.sent: list[SentMessage] = []
        self.workers: dict[str, WorkerInfo] = {}
        self.orchestrators: dict[str, set[str]] = {}
        self.parked: dict[str, tuple[str, str, bytes]] = {}  # message_id -> (job, def, body)
        self.schedules: dict[str, Schedule] = {}
        self.firings: dict[tuple[str, dt.datetime], Firing] = {}
        self.calls: list[str] = []

    async def close(self) -> None:
        pass

    # -- jobs ------------------------------------------------------------------

    async def create_job(self, job: NewJob) -> tuple[Job, bool]:
        self.calls.append("create_job")
        if job.total_stages < 1:
            raise InvalidArgument("total_stages must be at least 1", "total_stages")
        if job.job_id in self.jobs:
            return self._view(job.job_id), False
        try:
            parameters = json.loads(job.parameters_json or b"{}")
        except ValueError as exc:
            raise InvalidArgument(f"parameters_json is not valid JSON: {exc}") from None
        record = _Job(
            job,
            parameters,
            definition=job.definition,
            default_result=job.default_result,
            total_stages=job.total_stages,
        )
        self.jobs[job.job_id] = record
        if job.first_stage is None:
            self._send("stage_ready", job.job_id, stage=1)
        else:
            record.status = JobStatus.PROCESSING
            self._create_tasks(record, 1, job.first_stage)
        return self._view(job.job_id), True

    async def get_job(self, job_id: str) -> Job:
        self.calls.append("get_job")
        return self._view(job_id)

    async def job_and_stage_results(self, job_id: str, stage: int) -> tuple[Job, list[StageResult]]:
        self.calls.append("job_and_stage_results")
        return self._view(job_id), self._results(job_id, stage)

    async def stage_results(
        self, job_id: str, stage: int, *, from_index: int = 0, limit: int = 0
    ) -> list[StageResult]:
        self.calls.append("stage_results")
        self._job(job_id)
        if from_index < 0:
            raise InvalidArgument("from_index must be >= 0", "from_index")
        if limit < 0:
            raise InvalidArgument("limit must be >= 0 (0: every result)", "limit")
        results = [r for r in self._results(job_id, stage) if r.task_index >= from_index]
        return results[:limit] if limit else results

    async def create_stage_tasks(self, job_id: str, stage: int, plan: StagePlan) -> int:
        self.calls.append("create_stage_tasks")
        job = self._job(job_id)
        if job.status.is_terminal:
            return 0
        if not 1 <= stage <= job.total_stages:
            raise InvalidArgument(f"stage {stage} outside 1..{job.total_stages}", "stage")
        return self._create_tasks(job, stage, plan)

    async def complete_job(self, job_id: str, result_json: bytes) -> bool:
        self.calls.append("complete_job")
        job = self._job(job_id)
        last = job.stages.get(job.total_stages)
        if job.status != JobStatus.PROCESSING or last is None or last.status == "running":
            return False
        self._complete(job, json.loads(result_json) if result_json else None)
        return True

    async def fail_job(self, job_id: str, error: str) -> bool:
        self.calls.append("fail_job")
        return self._fail(self._job(job_id), error)

    async def failed_tasks(self, job_id: str) -> list[FailedTask]:
        self._job(job_id)
        failed = [
            t for t in self.tasks.values() if t.job_id == job_id and t.status == TaskStatus.FAILED
        ]
        failed.sort(key=lambda t: (t.stage, t.task_index))
        return [FailedTask(t.task_id, t.stage, t.task_index, t.error) for t in failed]

    # -- definitions -----------------------------------------------------------

    async def register_orchestrator(
        self,
        orchestrator_id: str,
        host: str,
        version: str,
        definitions: Sequence[JobTypeDefinition],
        ttl_seconds: int,
        stopping: bool = False,
    ) -> int:
        if stopping:
            self.orchestrators.pop(orchestrator_id, None)
            return 0
        served = {d.fingerprint for d in definitions}
        self.orchestrators[orchestrator_id] = served
        released = [m for m, (_, fp, _) in self.parked.items() if fp in served]
        for message_id in released:
            job_id, fp, _ = self.parked.pop(message_id)
            self.jobs[job_id].waiting = ""
            self._send("parked", job_id, definition=fp)
        return len(released)

    async def park_job_message(
        self,
        job_id: str,
        job_type: str,
        definition: str,
        message_id: str,
        body: bytes,
        orchestrator_id: str,
    ) -> tuple[bool, str]:
        job = self._job(job_id)
        if any(definition in served for served in self.orchestrators.values()):
            self._send("parked", job_id, definition=definition)
            return False, ""
        self.parked[message_id] = (job_id, definition, body)
        job.waiting = f"no running orchestrator serves definition {job_type}@{definition[:12]}"
        return True, job.waiting

    async def rebase_job(
        self, job_id: str, definition: str, total_stages: int, default_result: bool
    ) -> tuple[Job, int]:
        job = self._job(job_id)
        if job.status.is_terminal and job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise Conflict(f"job {job_id} is {job.status}: nothing to rebase")
        if job.stage > total_stages:
            raise Conflict(f"job {job_id} is at stage {job.stage}; that definition has fewer")
        job.definition, job.total_stages, job.default_result = (
            definition,
            total_stages,
            default_result,
        )
        mine = [m for m, (j, _, _) in self.parked.items() if j == job_id]
        for message_id in mine:
            del self.parked[message_id]
            self._send("parked", job_id, definition=definition)
        job.waiting = ""
        return self._view(job_id), len(mine)

    # -- tasks -----------------------------------------------------------------

    async def claim_tasks(
        self, worker_id: str, lease_seconds: int, claims: Sequence[TaskClaim]
    ) -> list[ClaimResult]:
        self.calls.append("claim_tasks")
        results = []
        for claim in claims:
            task = self.tasks.get(claim.task_id)
            if task is None:
                results.append(ClaimResult(claim.task_id, None, "unknown_task"))
            elif task.attempt != claim.attempt:
                results.append(ClaimResult(claim.task_id, None, "stale_attempt"))
            elif task.status != TaskStatus.QUEUED:
                results.append(ClaimResult(claim.task_id, None, f"task_{task.status}"))
            else:
                task.status = TaskStatus.PROCESSING
                task.lease_token = str(uuid.uuid4())
                task.worker_id = worker_id
                job = self.jobs[task.job_id]
                policy = job.stages[task.stage].policy
                results.append(
                    ClaimResult(
                        claim.task_id,
                        ClaimedTask(
                            task_id=task.task_id,
                            job_id=task.job_id,
                            job_type=job.new.job_type,
                            task_type=task.task_type,
                            stage=task.stage,
                            task_index=task.task_index,
                            attempt=task.attempt,
                            parameters_json=task.parameters_json,
                            lease_token=task.lease_token,
                            queue=policy.queue or self.tasks_queue,
                            task_timeout_ms=policy.task_timeout_ms,
                            heartbeat_timeout_ms=policy.heartbeat_timeout_ms,
                            previous_results=policy.previous_results,
                        ),
                    )
                )
        return results

    async def complete_tasks(self, outcomes: Sequence[TaskOutcome]) -> list[OutcomeAck]:
        self.calls.append("complete_tasks")
        acks = []
        seen: set[str] = set()
        for outcome in outcomes:
            task = self.tasks.get(outcome.task_id)
            if (
                outcome.task_id in seen
                or task is None
                or task.status != TaskStatus.PROCESSING
                or task.lease_token != outcome.lease_token
            ):
                acks.append(OutcomeAck(outcome.task_id, False))
                continue
            seen.add(outcome.task_id)
            acks.append(OutcomeAck(outcome.task_id, True, self._settle(task, outcome)))
        return acks

    async def renew_leases(self, lease_seconds: int, leases: Sequence[TaskLease]) -> LeaseRenewal:
        renewed, lost, cancelled = [], [], []
        for lease in leases:
            task = self.tasks.get(lease.task_id)
            if (
                task is not None
                and task.status == TaskStatus.PROCESSING
                and task.lease_token == lease.lease_token
            ):
                renewed.append(lease.task_id)
            else:
                lost.append(lease.task_id)
                if task is not None and task.status == TaskStatus.CANCELLED:
                    cancelled.append(lease.task_id)
        return LeaseRenewal(tuple(sorted(renewed)), tuple(sorted(lost)), tuple(sorted(cancelled)))

    async def release_tasks(self, leases: Sequence[TaskLease]) -> list[str]:
        released = []
        for lease in leases:
            task = self.tasks.get(lease.task_id)
            if (
                task
                and task.status == TaskStatus.PROCESSING
                and task.lease_token == lease.lease_token
            ):
                task.status, task.lease_token, task.worker_id = TaskStatus.QUEUED, "", ""
                self._send_task(task)
                released.append(task.task_id)
        return released

    async def report_progress(self, reports: Sequence[ProgressReport]) -> int:
        recorded = 0
        for report in reports:
            task = self.tasks.get(report.task_id)
            if (
                task
                and task.status == TaskStatus.PROCESSING
                and task.lease_token == report.lease_token
            ):
                task.progress = {
                    "current": report.current,
                    "total": report.total,
                    "message": report.message,
                }
                self.jobs[task.job_id].stages[task.stage].last_progress = {
                    "task_id": task.task_id,
                    "task_index": task.task_index,
                    **task.progress,
                }
                recorded += 1
        return recorded

    async def heartbeat_worker(
        self, worker: WorkerInfo, ttl_seconds: int, stopping: bool = False
    ) -> None:
        self.workers[worker.worker_id] = dataclasses.replace(
            worker,
            state="stopped" if stopping else "live",
            last_seen_at=dt.datetime.now(dt.UTC),
        )

    # -- schedules -------------------------------------------------------------
    # The state service's rules (services/state/schedules_store.py) in one
    # process: a due schedule's ticks through the catch-up policy, overlap
    # against the previous run, firings pending until recorded.

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        self.calls.append("create_schedule")
        try:
            check_schedule(schedule)
        except ScheduleError as exc:
            raise InvalidArgument(str(exc), exc.field) from None
        if schedule.name in self.schedules:
            raise Conflict(f"schedule {schedule.name!r} exists already")
        now = dt.datetime.now(dt.UTC)
        created = dataclasses.replace(
            schedule, uid=uuid.uuid4().hex, anchor_at=now, created_at=now, updated_at=now
        )
        created = dataclasses.replace(created, next_fire_at=first_tick(created, now))
        self.schedules[schedule.name] = created
        return created

    async def trigger_schedule(self, name: str, orchestrator_id: str, lease_seconds: int) -> Firing:
        self.calls.append("trigger_schedule")
        schedule = self._schedule(name)
        return self._fire(schedule, dt.datetime.now(dt.UTC), "manual")

    async def claim_due_firings(
        self, orchestrator_id: str, job_types: Sequence[str], limit: int, lease_seconds: int
    ) -> tuple[list[Firing], float | None]:
        self.calls.append("claim_due_firings")
        now = dt.datetime.now(dt.UTC)
        firings: list[Firing] = []
        mine = [s for s in self.schedules.values() if s.job_type in job_types and not s.paused]
        for schedule in mine:
            assert schedule.next_fire_at is not None
            if schedule.next_fire_at > now:
                continue
            due = due_ticks(schedule, schedule.next_fire_at, now)
            previous = self._previous_run(schedule.name)
            for tick, kind in due.fire:
                if previous and schedule.overlap == "skip":
                    self.firings[(schedule.name, tick)] = Firing(
                        schedule.name, tick, kind, "skipped", detail="the previous run is going"
                    )
                else:
                    firings.append(self._fire(schedule, tick, kind))
            self.schedules[schedule.name] = dataclasses.replace(
                schedule, next_fire_at=due.next_fire_at
            )
        upcoming = [s.next_fire_at for s in mine if s.next_fire_at is not None]
        wait = (min(upcoming) - now).total_seconds() if upcoming else None
        return firings[:limit], wait

    async def record_firing(
        self, firing: Firing, outcome: str, job_id: str = "", detail: str = ""
    ) -> bool:
        self.calls.append("record_firing")
        key = (firing.schedule, firing.tick_at)
        current = self.firings.get(key)
        if current is None or current.outcome != "pending":
            return False
        self.firings[key] = dataclasses.replace(
            current, outcome=outcome, job_id=job_id or current.job_id, detail=detail
        )
        return True

    def _schedule(self, name: str) -> Schedule:
        schedule = self.schedules.get(name)
        if schedule is None:
            raise NotFound(f"schedule {name!r} not found")
        return schedule

    def _fire(self, schedule: Schedule, tick: dt.datetime, kind: str) -> Firing:
        firing = Firing(
            schedule.name,
            tick,
            kind,
            "pending",
            job_id=scheduled_job_id(schedule.uid, tick),
            job_type=schedule.job_type,
            parameters=dict(schedule.parameters),
            priority=schedule.priority,
        )
        self.firings[(schedule.name, tick)] = firing
        return firing

    def _previous_run(self, name: str) -> bool:
        """Whether the schedule's latest firing may still be going."""
        runs = sorted(
            (
                f
                for (n, _), f in self.firings.items()
                if n == name and f.outcome in ("pending", "submitted")
            ),
            key=lambda f: f.tick_at,
        )
        if not runs:
            return False
        last = runs[-1]
        job = self.jobs.get(last.job_id)
        return last.outcome == "pending" or (job is not None and not job.status.is_terminal)

    # -- the rules -------------------------------------------------------------

    def _job(self, job_id: str) -> _Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    def _view(self, job_id: str) -> Job:
        job = self._job(job_id)
        return Job(
            job_id=job_id,
            job_type=job.new.job_type,
            status=job.status,
            stage=job.stage,
            total_stages=job.total_stages,
            parameters=dict(job.parameters),
            result=job.result,
            error=job.error,
            stages=tuple(
                StageProgress(
                    stage=n,
                    status=s.status,
                    task_count=s.task_count,
                    completed=s.completed,
                    failed=s.failed,
                    cancelled=s.cancelled,
                    remaining=s.remaining,
                    queue=s.policy.queue or self.tasks_queue,
                    last_progress=s.last_progress,
                )
                for n, s in sorted(job.stages.items())
            ),
            stage_summaries=dict(job.summaries),
            definition=job.definition,
            waiting=job.waiting,
        )

    def _results(self, job_id: str, stage: int) -> list[StageResult]:
        tasks = sorted(
            (t for t in self.tasks.values() if t.job_id == job_id and t.stage == stage),
            key=lambda t: t.task_index,
        )
        return [
            StageResult(t.task_index, t.task_id, t.status, t.result_json, t.error) for t in tasks
        ]

    def _create_tasks(self, job: _Job, stage: int, plan: StagePlan) -> int:
        for spec in plan.tasks:
            if not 0 <= spec.task_index < plan.total_tasks:
                raise InvalidArgument(
                    f"task_index {spec.task_index} outside 0..{plan.total_tasks - 1}", "task_index"
                )
        row = job.stages.get(stage)
        if row is None:
            row = job.stages[stage] = _Stage(plan.total_tasks, plan.total_tasks, plan.policy)
            job.status, job.stage = JobStatus.PROCESSING, stage
        elif row.task_count != plan.total_tasks:
            raise InvalidArgument(
                f"stage {stage} has {row.task_count} tasks, not {plan.total_tasks}", "total_tasks"
            )
        if row.status != StageStatus.RUNNING:
            return 0
        created = 0
        job_id = job.new.job_id
        for spec in plan.tasks:
            task_id = task_id_for(job_id, stage, spec.task_index)
            if task_id in self.tasks:
                continue
            task = _Task(
                task_id, job_id, stage, spec.task_index, spec.task_type, spec.parameters_json
            )
            self.tasks[task_id] = task
            self._send_task(task)
            created += 1
        if plan.total_tasks == 0:
            self._evaluate(job, stage, None)
        return created

    def _settle(self, task: _Task, outcome: TaskOutcome) -> str:
        job = self.jobs[task.job_id]
        row = job.stages[task.stage]
        task.lease_token, task.worker_id = "", ""
        if outcome.succeeded:
            task.status, task.result_json, task.error = (
                TaskStatus.COMPLETED,
                outcome.result_json or b"null",
                "",
            )
            row.completed += 1
            status = "completed"
        elif outcome.retryable and task.attempt < row.policy.retry.max_attempts:
            task.status, task.attempt, task.error = (
                TaskStatus.QUEUED,
                task.attempt + 1,
                outcome.error,
            )
            self._send_task(task)
            return "retrying"
        else:
            task.status, task.error = TaskStatus.FAILED, outcome.error
            row.failed += 1
            status = "failed"
        row.remaining -= 1
        failure = (
            f"task {task.task_id} failed after {task.attempt} attempt(s): {task.error}"
            if status == "failed"
            else None
        )
        self._evaluate(job, task.stage, failure)
        return status

    def _evaluate(self, job: _Job, stage: int, failure: str | None) -> None:
        """The barrier: fail the job past its tolerance, advance the stage at zero."""
        row = job.stages[stage]
        if row.status != StageStatus.RUNNING or job.status.is_terminal:
            return
        tolerance = row.policy.max_failed_tasks
        if tolerance >= 0 and row.failed > tolerance:
            self._fail(job, failure or f"stage {stage} failed")
            return
        if row.remaining > 0:
            return
        row.status = StageStatus.COMPLETED_WITH_ERRORS if row.failed else StageStatus.COMPLETED
        job.summaries[str(stage)] = {
            "task_count": row.task_count,
            "completed": row.completed,
            "failed": row.failed,
            "cancelled": row.cancelled,
            "status": row.status.value,
        }
        job_id = job.new.job_id
        if stage < job.total_stages:
            job.stage = stage + 1
            self._send("stage_ready", job_id, stage=stage + 1)
        elif job.default_result:
            failed_tasks = sorted(
                (t for t in self.tasks.values() if t.job_id == job_id and t.status == "failed"),
                key=lambda t: (t.stage, t.task_index),
            )
            failed = [
                {
                    "task_id": t.task_id,
                    "stage": t.stage,
                    "task_index": t.task_index,
                    "error": t.error,
                }
                for t in failed_tasks
            ]
            self._complete(job, default_summary(job.new.job_type, job.summaries, failed))
        else:
            self._send("finalize_job", job_id)

    def _complete(self, job: _Job, result: Any) -> None:
        failed = any(s.failed for s in job.stages.values())
        job.status = JobStatus.COMPLETED_WITH_ERRORS if failed else JobStatus.COMPLETED
        job.result = result

    def _fail(self, job: _Job, error: str) -> bool:
        if job.status.is_terminal:
            return False
        job.status, job.error = JobStatus.FAILED, error
        for row in job.stages.values():
            if row.status == StageStatus.RUNNING:
                row.status = StageStatus.FAILED
        for task in self.tasks.values():
            if task.job_id == job.new.job_id and not task.status.is_terminal:
                task.status, task.lease_token = TaskStatus.CANCELLED, ""
                row = job.stages[task.stage]
                row.cancelled += 1
                row.remaining = max(row.remaining - 1, 0)
        return True

    def _send_task(self, task: _Task) -> None:
        queue = self.jobs[task.job_id].stages[task.stage].policy.queue or self.tasks_queue
        self.sent.append(
            SentMessage(queue, "task", task.job_id, task.stage, task.task_id, task.attempt)
        )

    def _send(self, kind: str, job_id: str, stage: int = 0, definition: str = "") -> None:
        self.sent.append(
            SentMessage(
                self.jobs_queue,
                kind,
                job_id,
                stage,
                definition=definition or self.jobs[job_id].definition,
            )
        )
