"""The StateService gRPC edge: requests -> StateStore calls -> responses."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterable

import grpc

from coremachine.common.v1 import common_pb2
from coremachine.services.state import convert
from coremachine.services.state.admin import Admin
from coremachine.services.state.definitions_store import DefinitionStore
from coremachine.services.state.diagnosis import Diagnoser
from coremachine.services.state.event_feed import EventFeed, Level
from coremachine.services.state.failure_report import failures_by_error
from coremachine.services.state.schedules_store import ScheduleStore
from coremachine.services.state.store import StateStore
from coremachine.services.state.store_models import (
    Claim,
    JobStart,
    JobView,
    NewTaskSpec,
    Outcome,
    RateLimitSpec,
    StagePolicy,
    StageTasks,
)
from coremachine.services.state.workers_store import WorkerStore
from coremachine.shared.domain.jobs import JobTypeDefinition
from coremachine.shared.domain.names import TASK_ID_PATTERN
from coremachine.shared.domain.priorities import DEFAULT_PRIORITY, check_priority
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.domain.tasks import ProgressReport, WorkerInfo
from coremachine.shared.errors import CoreMachineError, InvalidArgument
from coremachine.shared.grpc_errors import map_errors, status_for
from coremachine.shared.state_clients.convert import (
    firing_to_proto,
    schedule_from_proto,
    schedule_to_proto,
    worker_to_proto,
)
from coremachine.shared.status_codes import job_status_from_proto, task_status_from_proto
from coremachine.state.v1 import state_pb2, state_pb2_grpc

MAX_WAIT_MS = 30_000
MAX_LEASE_SECONDS = 86_400
# Stand-ins for an id or token that cannot exist: an item of a batch that
# holds one is refused alone (unknown, stale) instead of the whole batch
# failing on what PostgreSQL cannot parse (a NUL, a malformed UUID).
_NO_TASK = "-"
_NO_LEASE = "00000000-0000-0000-0000-000000000000"
_TASK_ID = re.compile(TASK_ID_PATTERN)


def _task_id(value: str) -> str:
    return value if _TASK_ID.match(value) else _NO_TASK


def _lease_token(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return _NO_LEASE


def _text(data: bytes, field: str) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{field} is not UTF-8: {exc}", field) from None


def _json_or_empty(data: bytes, field: str) -> object:
    if not data:
        return {}
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"{field} is not valid JSON: {exc}", field) from None


def _lease(seconds: int) -> int:
    if not 0 <= seconds <= MAX_LEASE_SECONDS:
        raise InvalidArgument(f"lease_seconds must be 0..{MAX_LEASE_SECONDS}", "lease_seconds")
    return seconds or 30


def _require(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required", field)
    return value


class StateServicer(state_pb2_grpc.StateServiceServicer):
    def __init__(
        self,
        store: StateStore,
        admin: Admin,
        feed: EventFeed | None = None,
        definitions: DefinitionStore | None = None,
        workers: WorkerStore | None = None,
        diagnoser: Diagnoser | None = None,
        schedules: ScheduleStore | None = None,
    ) -> None:
        self.store = store
        self.admin = admin
        self.feed = feed
        self.definitions = definitions or DefinitionStore(store.pool, store.outbox)
        self.workers = workers or WorkerStore(store.pool)
        self.diagnoser = diagnoser
        self.schedules = schedules or ScheduleStore(store.pool, store)

    def _job(self, view: JobView) -> common_pb2.Job:
        return convert.job_to_proto(view, self.store.outbox.tasks_queue)

    @map_errors
    async def CancelJob(self, request, context):
        view, changed = await self.store.cancel_job(
            _require(request.job_id, "job_id"), request.reason or "cancelled by request"
        )
        return state_pb2.CancelJobResponse(job=self._job(view), changed=changed)

    @map_errors
    async def RedriveJob(self, request, context):
        view, requeued = await self.store.redrive_job(_require(request.job_id, "job_id"))
        return state_pb2.RedriveJobResponse(job=self._job(view), tasks_requeued=requeued)

    @map_errors
    async def ListEvents(self, request, context):
        if request.after_seq < 0:
            raise InvalidArgument("after_seq must be >= 0", "after_seq")
        job_id = _require(request.job_id, "job_id")
        level = (
            Level.END if request.end_only else Level.JOB if request.job_level_only else Level.TASK
        )
        if request.wait_ms <= 0 or self.feed is None:
            page = await self.store.events_page(
                job_id, request.after_seq, request.limit, request.job_level_only, request.end_only
            )
        else:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + min(request.wait_ms, MAX_WAIT_MS) / 1000
            # Watch before reading, so an event committed in between is not missed.
            with self.feed.watching(job_id, level) as woken:
                while True:
                    woken.clear()
                    page = await self.store.events_page(
                        job_id,
                        request.after_seq,
                        request.limit,
                        request.job_level_only,
                        request.end_only,
                    )
                    remaining = deadline - loop.time()
                    if page.events or page.complete or remaining <= 0:
                        break
                    # Woken by events this reader filters out, or not at all yet:
                    # keep waiting within the caller's deadline.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), remaining)
        return state_pb2.ListEventsResponse(
            events=[convert.event_to_proto(e) for e in page.events],
            complete=page.complete,
            job=self._job(page.job) if page.job is not None else None,
        )

    @map_errors
    async def GetStats(self, request, context):
        jobs, tasks, tables = await self.admin.stats()
        return state_pb2.GetStatsResponse(
            jobs_by_status=jobs,
            tasks_by_status=tasks,
            tables_json=json.dumps(tables, default=str).encode(),
        )

    @map_errors
    async def CheckDependencies(self, request, context):
        database, broker, depths, dead = await self.admin.dependencies()
        return state_pb2.CheckDependenciesResponse(
            database=database, broker=broker, queue_depths=depths, dead_letters=dead
        )

    @map_errors
    async def ListTaskFailures(self, request, context):
        report = await failures_by_error(
            self.admin.pool, _require(request.job_id, "job_id"), request.limit
        )
        return state_pb2.ListTaskFailuresResponse(
            groups=[
                state_pb2.TaskFailureGroup(
                    error=g.error,
                    tasks=g.tasks,
                    stages=g.stages,
                    min_attempt=g.min_attempt,
                    max_attempt=g.max_attempt,
                    samples=[
                        state_pb2.FailedTaskSample(
                            task_id=t.task_id,
                            stage=t.stage,
                            task_index=t.task_index,
                            attempt=t.attempt,
                        )
                        for t in g.samples
                    ],
                )
                for g in report.groups
            ],
            scanned=report.scanned,
            truncated=report.truncated,
        )

    @map_errors
    async def ListQueues(self, request, context):
        now = dt.datetime.now(dt.UTC)
        queues = []
        for name, stats in await self.admin.queue_stats():
            info = state_pb2.QueueInfo(
                queue=name, depth=stats.depth, dead_letters=stats.dead_letters
            )
            if stats.oldest_enqueued_at is not None:
                info.oldest_age_seconds = max(0.0, (now - stats.oldest_enqueued_at).total_seconds())
            queues.append(info)
        return state_pb2.ListQueuesResponse(queues=queues)

    @map_errors
    async def ListDeadLetters(self, request, context):
        views = await self.admin.dead_letters(_require(request.queue, "queue"), request.limit)
        return state_pb2.ListDeadLettersResponse(
            messages=[
                state_pb2.DeadLetterMessage(
                    queue=v.letter.queue,
                    sequence=v.letter.sequence,
                    message_id=v.letter.message_id,
                    body=v.letter.body,
                    reason=v.letter.reason,
                    description=v.letter.description,
                    delivery_count=v.letter.delivery_count,
                    job_id=v.job_id,
                    task_id=v.task_id,
                )
                for v in views
            ]
        )

    @map_errors
    async def ReplayDeadLetters(self, request, context):
        replayed = await self.admin.replay(
            _require(request.queue, "queue"), list(request.sequences)
        )
        return state_pb2.ReplayDeadLettersResponse(replayed=replayed)

    @map_errors
    async def FailDeadLetters(self, request, context):
        failed, purged = await self.admin.fail(
            _require(request.queue, "queue"), list(request.sequences), request.reason
        )
        return state_pb2.FailDeadLettersResponse(jobs_failed=failed, purged=purged)

    @map_errors
    async def RedeploySchema(self, request, context):
        versions = await self.admin.redeploy_schema(request.confirm)
        return state_pb2.RedeploySchemaResponse(migrations_applied=versions)

    @map_errors
    async def CreateJob(self, request, context):
        params = _json_or_empty(request.parameters_json, "parameters_json")
        metadata = _json_or_empty(request.metadata_json, "metadata_json")
        if len(request.job_id) != 64:
            raise InvalidArgument("job_id must be 64 hex characters", "job_id")
        first = request.first_stage if request.HasField("first_stage") else None
        view, created = await self.store.create_job(
            request.job_id,
            _require(request.job_type, "job_type"),
            params,
            request.total_stages,
            metadata,
            StageTasks(first.total_tasks, _task_specs(first.tasks), _stage_policy(first.policy))
            if first is not None
            else None,
            default_result=request.default_result,
            definition=request.definition,
            start=_job_start(request),
        )
        return state_pb2.CreateJobResponse(job=self._job(view), created=created)

    @map_errors
    async def GetJob(self, request, context):
        view = await self.store.get_job(_require(request.job_id, "job_id"))
        return state_pb2.GetJobResponse(job=self._job(view))

    @map_errors
    async def ListJobs(self, request, context):
        status = job_status_from_proto(request.status)
        views, token = await self.store.list_jobs(
            status, request.job_type or None, request.limit, request.page_token
        )
        return state_pb2.ListJobsResponse(jobs=[self._job(v) for v in views], next_page_token=token)

    @map_errors
    async def CreateStageTasks(self, request, context):
        policy = _stage_policy(request.policy)
        tasks = _task_specs(request.tasks)
        created, completed = await self.store.create_stage_tasks(
            _require(request.job_id, "job_id"),
            request.stage,
            request.total_tasks,
            tasks,
            policy,
        )
        return state_pb2.CreateStageTasksResponse(created=created, stage_completed=completed)

    @map_errors
    async def ClaimTasks(self, request, context):
        if not 0 <= request.lease_seconds <= MAX_LEASE_SECONDS:
            raise InvalidArgument(f"lease_seconds must be 0..{MAX_LEASE_SECONDS}", "lease_seconds")
        outcomes = await self.store.claim_tasks(
            _require(request.worker_id, "worker_id"),
            request.lease_seconds or 60,
            [Claim(_task_id(c.task_id), c.attempt) for c in request.claims],
        )
        return state_pb2.ClaimTasksResponse(
            results=[
                state_pb2.ClaimResult(
                    task_id=claim.task_id,
                    granted=o.task is not None,
                    lease_token=o.task.lease_token if o.task else "",
                    task=convert.claimed_to_proto(o.task) if o.task else None,
                    reason=o.reason,
                    queue=o.task.queue if o.task else "",
                    task_timeout_ms=o.task.task_timeout_ms if o.task else 0,
                    heartbeat_timeout_ms=o.task.heartbeat_timeout_ms if o.task else 0,
                    previous_results=o.task.previous_results if o.task else False,
                )
                for claim, o in zip(request.claims, outcomes, strict=True)
            ]
        )

    @map_errors
    async def CompleteTasks(self, request, context):
        outcomes = [
            Outcome(
                _task_id(o.task_id),
                _lease_token(o.lease_token),
                o.succeeded,
                _text(o.result_json, "outcomes.result_json") if o.result_json else None,
                o.error,
                o.retryable,
                o.trace_context[:256],
            )
            for o in request.outcomes
        ]
        results, stages = await self.store.complete_tasks(outcomes)
        return state_pb2.CompleteTasksResponse(
            results=[
                state_pb2.OutcomeResult(
                    task_id=o.task_id, accepted=r.accepted, task_status=r.task_status
                )
                for o, r in zip(request.outcomes, results, strict=True)
            ],
            stages_completed=[state_pb2.StageRef(job_id=j, stage=s) for j, s in stages],
        )

    @map_errors
    async def RenewLeases(self, request, context):
        if not 0 <= request.lease_seconds <= MAX_LEASE_SECONDS:
            raise InvalidArgument(f"lease_seconds must be 0..{MAX_LEASE_SECONDS}", "lease_seconds")
        renewed, lost, cancelled = await self.store.renew_leases(
            request.lease_seconds or 60,
            [
                (_task_id(lease.task_id), _lease_token(lease.lease_token))
                for lease in request.leases
            ],
        )
        return state_pb2.RenewLeasesResponse(renewed=renewed, lost=lost, cancelled=cancelled)

    @map_errors
    async def ReportProgress(self, request, context):
        recorded = await self.store.record_progress(
            [
                ProgressReport(
                    _task_id(r.task_id),
                    _lease_token(r.lease_token),
                    r.current,
                    r.total or None,
                    r.message[:500],
                )
                for r in request.reports
            ]
        )
        return state_pb2.ReportProgressResponse(recorded=recorded)

    @map_errors
    async def RegisterOrchestrator(self, request, context):
        definitions = [
            JobTypeDefinition(
                _require(d.job_type, "job_types.job_type"),
                _require(d.fingerprint, "job_types.fingerprint"),
                _json_or_empty(d.parameters_schema_json, "job_types.parameters_schema_json"),
                _json_or_empty(d.definition_json, "job_types.definition_json"),
            )
            for d in request.job_types
        ]
        released = await self.definitions.register_orchestrator(
            _require(request.orchestrator_id, "orchestrator_id"),
            request.host,
            request.version,
            definitions,
            max(request.ttl_seconds, 1),
            request.stopping,
        )
        return state_pb2.RegisterOrchestratorResponse(released=released)

    @map_errors
    async def ParkJobMessage(self, request, context):
        parked, reason = await self.definitions.park(
            _require(request.job_id, "job_id"),
            _require(request.job_type, "job_type"),
            _require(request.definition, "definition"),
            _require(request.message_id, "message_id"),
            request.body,
        )
        return state_pb2.ParkJobMessageResponse(parked=parked, reason=reason)

    @map_errors
    async def RebaseJob(self, request, context):
        if request.total_stages < 1:
            raise InvalidArgument("total_stages must be at least 1", "total_stages")
        _, released = await self.definitions.rebase(
            _require(request.job_id, "job_id"),
            _require(request.definition, "definition"),
            request.total_stages,
            request.default_result,
        )
        view = await self.store.get_job(request.job_id)
        return state_pb2.RebaseJobResponse(job=self._job(view), released=released)

    @map_errors
    async def HeartbeatWorker(self, request, context):
        w = request.worker
        await self.workers.heartbeat(
            WorkerInfo(
                worker_id=_require(w.worker_id, "worker.worker_id"),
                host=w.host,
                queues=tuple(w.queues),
                task_types=tuple(w.task_types),
                concurrency=w.concurrency,
                in_flight=w.in_flight,
                version=w.version,
                started_at=w.started_at.ToDatetime(tzinfo=dt.UTC)
                if w.HasField("started_at")
                else None,
            ),
            max(request.ttl_seconds, 1),
            request.stopping,
        )
        return state_pb2.HeartbeatWorkerResponse()

    @map_errors
    async def ListWorkers(self, request, context):
        if request.include_gone_seconds < 0:
            raise InvalidArgument("include_gone_seconds must be >= 0", "include_gone_seconds")
        workers = await self.workers.list(request.include_gone_seconds)
        return state_pb2.ListWorkersResponse(workers=[worker_to_proto(w) for w in workers])

    # -- schedules ---------------------------------------------------------------

    @map_errors
    async def CreateSchedule(self, request, context):
        created = await self.schedules.create(schedule_from_proto(request.schedule))
        return state_pb2.CreateScheduleResponse(schedule=schedule_to_proto(created))

    @map_errors
    async def GetSchedule(self, request, context):
        found = await self.schedules.get(_require(request.name, "name"))
        return state_pb2.GetScheduleResponse(schedule=schedule_to_proto(found))

    @map_errors
    async def ListSchedules(self, request, context):
        if request.limit < 0:
            raise InvalidArgument("limit must be >= 0", "limit")
        found, token = await self.schedules.list_schedules(request.limit, request.page_token)
        return state_pb2.ListSchedulesResponse(
            schedules=[schedule_to_proto(x) for x in found], next_page_token=token
        )

    @map_errors
    async def SetSchedulePaused(self, request, context):
        updated = await self.schedules.set_paused(_require(request.name, "name"), request.paused)
        return state_pb2.SetSchedulePausedResponse(schedule=schedule_to_proto(updated))

    @map_errors
    async def DeleteSchedule(self, request, context):
        deleted = await self.schedules.delete(_require(request.name, "name"))
        return state_pb2.DeleteScheduleResponse(deleted=deleted)

    @map_errors
    async def TriggerSchedule(self, request, context):
        firing = await self.schedules.trigger(
            _require(request.name, "name"),
            _require(request.orchestrator_id, "orchestrator_id"),
            _lease(request.lease_seconds),
        )
        return state_pb2.TriggerScheduleResponse(firing=firing_to_proto(firing))

    @map_errors
    async def ClaimDueFirings(self, request, context):
        firings, wait = await self.schedules.claim_due(
            _require(request.orchestrator_id, "orchestrator_id"),
            list(request.job_types),
            request.limit,
            _lease(request.lease_seconds),
        )
        return state_pb2.ClaimDueFiringsResponse(
            firings=[firing_to_proto(f) for f in firings],
            next_due_in_ms=max(int((wait or 0) * 1000), 1) if wait is not None else 0,
        )

    @map_errors
    async def RecordFiring(self, request, context):
        if not request.HasField("tick_at"):
            raise InvalidArgument("tick_at is required", "tick_at")
        recorded = await self.schedules.record(
            _require(request.schedule, "schedule"),
            request.tick_at.ToDatetime(tzinfo=dt.UTC),
            request.outcome,
            request.job_id,
            request.detail,
        )
        return state_pb2.RecordFiringResponse(recorded=recorded)

    @map_errors
    async def ListFirings(self, request, context):
        if request.limit < 0:
            raise InvalidArgument("limit must be >= 0", "limit")
        firings = await self.schedules.firings(_require(request.name, "name"), request.limit)
        return state_pb2.ListFiringsResponse(firings=[firing_to_proto(f) for f in firings])

    @map_errors
    async def DiagnoseJob(self, request, context):
        if self.diagnoser is None:  # built by bootstrap; here for servicers built without one
            self.diagnoser = Diagnoser(
                self.store.pool, self.store, self.admin.broker, self.workers, 5.0
            )
        diagnosis = await self.diagnoser.diagnose(_require(request.job_id, "job_id"))
        return state_pb2.DiagnoseJobResponse(
            diagnosis=convert.diagnosis_to_proto(diagnosis, self.store.outbox.tasks_queue)
        )

    @map_errors
    async def ReleaseTasks(self, request, context):
        released = await self.store.release_tasks(
            [(_task_id(lease.task_id), _lease_token(lease.lease_token)) for lease in request.leases]
        )
        return state_pb2.ReleaseTasksResponse(released=released)

    async def GetStageResults(
        self, request, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[state_pb2.GetStageResultsResponse]:
        try:
            if request.include_job:
                view = await self.store.get_job(_require(request.job_id, "job_id"))
                yield state_pb2.GetStageResultsResponse(job=self._job(view))
            chunks = self.store.stage_results(
                request.job_id,
                request.stage,
                check_job=not request.include_job,
                from_index=request.from_index,
                limit=request.limit,
            )
            async for chunk in chunks:
                yield state_pb2.GetStageResultsResponse(
                    results=[convert.stage_result_to_proto(r) for r in chunk]
                )
        except CoreMachineError as exc:
            await context.abort(status_for(exc), str(exc))

    @map_errors
    async def CompleteJob(self, request, context):
        result = json.loads(request.result_json) if request.result_json else None
        view, changed = await self.store.complete_job(_require(request.job_id, "job_id"), result)
        return state_pb2.CompleteJobResponse(job=self._job(view), changed=changed)

    @map_errors
    async def FailJob(self, request, context):
        view, changed = await self.store.fail_job(
            _require(request.job_id, "job_id"), request.error or "failed"
        )
        return state_pb2.FailJobResponse(job=self._job(view), changed=changed)

    @map_errors
    async def ListTasks(self, request, context):
        tasks, token = await self.store.list_tasks(
            request.job_id or None,
            request.stage or None,
            task_status_from_proto(request.status),
            request.limit,
            request.page_token,
        )
        return state_pb2.ListTasksResponse(
            tasks=[convert.task_to_proto(t) for t in tasks], next_page_token=token
        )


def _stage_policy(p: state_pb2.StagePolicy) -> StagePolicy:
    try:
        retry = RetryPolicy(
            max_attempts=p.max_attempts or 4,
            backoff_base_ms=p.backoff_base_ms or 1000,
            backoff_max_ms=p.backoff_max_ms or 60_000,
        )
    except ValueError as exc:
        raise InvalidArgument(str(exc), "policy") from None
    for name in ("task_timeout_ms", "heartbeat_timeout_ms"):
        if getattr(p, name) < 0:
            raise InvalidArgument(f"policy.{name} must be >= 0", f"policy.{name}")
    concurrency = tuple((c.key, c.limit) for c in p.concurrency)
    for key, limit in concurrency:
        if not key or len(key) > 500 or limit < 1:
            raise InvalidArgument(
                "policy.concurrency: each key non-empty (at most 500 characters), limit >= 1",
                "policy.concurrency",
            )
    rate = None
    if p.HasField("rate_limit"):
        r = p.rate_limit
        if not r.name or not r.per_second > 0 or r.burst < 1:
            raise InvalidArgument(
                "policy.rate_limit: a name, per_second > 0 and burst >= 1", "policy.rate_limit"
            )
        rate = RateLimitSpec(r.name, r.per_second, r.burst)
    return StagePolicy(
        retry,
        p.max_failed_tasks,
        queue=p.queue or None,
        task_timeout_ms=p.task_timeout_ms,
        heartbeat_timeout_ms=p.heartbeat_timeout_ms,
        previous_results=p.previous_results,
        concurrency=concurrency,
        rate_limit=rate,
    )


def _job_start(request: state_pb2.CreateJobRequest) -> JobStart:
    priority = request.priority if request.HasField("priority") else DEFAULT_PRIORITY
    try:
        check_priority(priority)
    except ValueError as exc:
        raise InvalidArgument(str(exc), "priority") from None
    if request.max_running < 0:
        raise InvalidArgument("max_running must be >= 0 (0: no limit)", "max_running")
    return JobStart(
        priority=priority,
        not_before=request.not_before.ToDatetime(tzinfo=dt.UTC)
        if request.HasField("not_before")
        else None,
        max_running=request.max_running or None,
        flow_limited=request.flow_limited,
    )


def _task_specs(tasks: Iterable[state_pb2.NewTask]) -> list[NewTaskSpec]:
    return [
        NewTaskSpec(
            t.task_index,
            _require(t.task_type, "task_type"),
            (t.parameters_json or b"{}").decode(),
        )
        for t in tasks
    ]
