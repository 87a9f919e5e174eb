"""The StateService gRPC edge: requests -> StateStore calls -> responses."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable

import grpc

from coremachine.services.state import convert
from coremachine.services.state.admin import Admin
from coremachine.services.state.event_feed import EventFeed, Level
from coremachine.services.state.store import StateStore
from coremachine.services.state.store_models import (
    Claim,
    NewTaskSpec,
    Outcome,
    StagePolicy,
    StageTasks,
)
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.errors import CoreMachineError, InvalidArgument
from coremachine.shared.grpc_errors import map_errors, status_for
from coremachine.state.v1 import state_pb2, state_pb2_grpc

MAX_WAIT_MS = 30_000


def _json_or_empty(data: bytes, field: str) -> object:
    if not data:
        return {}
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InvalidArgument(f"{field} is not valid JSON: {exc}", field) from None


def _require(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field} is required", field)
    return value


class StateServicer(state_pb2_grpc.StateServiceServicer):
    def __init__(self, store: StateStore, admin: Admin, feed: EventFeed | None = None) -> None:
        self.store = store
        self.admin = admin
        self.feed = feed

    @map_errors
    async def CancelJob(self, request, context):
        view, changed = await self.store.cancel_job(
            _require(request.job_id, "job_id"), request.reason or "cancelled by request"
        )
        return state_pb2.CancelJobResponse(job=convert.job_to_proto(view), changed=changed)

    @map_errors
    async def RedriveJob(self, request, context):
        view, requeued = await self.store.redrive_job(_require(request.job_id, "job_id"))
        return state_pb2.RedriveJobResponse(job=convert.job_to_proto(view), tasks_requeued=requeued)

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
            job=convert.job_to_proto(page.job) if page.job is not None else None,
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
        )
        return state_pb2.CreateJobResponse(job=convert.job_to_proto(view), created=created)

    @map_errors
    async def GetJob(self, request, context):
        view = await self.store.get_job(_require(request.job_id, "job_id"))
        return state_pb2.GetJobResponse(job=convert.job_to_proto(view))

    @map_errors
    async def ListJobs(self, request, context):
        status = convert.JOB_STATUS_NAME.get(request.status)
        views, token = await self.store.list_jobs(
            status, request.job_type or None, request.limit, request.page_token
        )
        return state_pb2.ListJobsResponse(
            jobs=[convert.job_to_proto(v) for v in views], next_page_token=token
        )

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
        outcomes = await self.store.claim_tasks(
            _require(request.worker_id, "worker_id"),
            request.lease_seconds or 60,
            [Claim(c.task_id, c.attempt) for c in request.claims],
        )
        return state_pb2.ClaimTasksResponse(
            results=[
                state_pb2.ClaimResult(
                    task_id=o.task_id,
                    granted=o.task is not None,
                    lease_token=o.task.lease_token if o.task else "",
                    task=convert.claimed_to_proto(o.task) if o.task else None,
                    reason=o.reason,
                )
                for o in outcomes
            ]
        )

    @map_errors
    async def CompleteTasks(self, request, context):
        outcomes = [
            Outcome(
                o.task_id,
                o.lease_token,
                o.succeeded,
                o.result_json.decode() if o.result_json else None,
                o.error,
                o.retryable,
            )
            for o in request.outcomes
        ]
        results, stages = await self.store.complete_tasks(outcomes)
        return state_pb2.CompleteTasksResponse(
            results=[
                state_pb2.OutcomeResult(
                    task_id=r.task_id, accepted=r.accepted, task_status=r.task_status
                )
                for r in results
            ],
            stages_completed=[state_pb2.StageRef(job_id=j, stage=s) for j, s in stages],
        )

    @map_errors
    async def RenewLeases(self, request, context):
        renewed, lost = await self.store.renew_leases(
            request.lease_seconds or 60,
            [(lease.task_id, lease.lease_token) for lease in request.leases],
        )
        return state_pb2.RenewLeasesResponse(renewed=renewed, lost=lost)

    @map_errors
    async def ReleaseTasks(self, request, context):
        released = await self.store.release_tasks(
            [(lease.task_id, lease.lease_token) for lease in request.leases]
        )
        return state_pb2.ReleaseTasksResponse(released=released)

    async def GetStageResults(
        self, request, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[state_pb2.GetStageResultsResponse]:
        try:
            if request.include_job:
                view = await self.store.get_job(_require(request.job_id, "job_id"))
                yield state_pb2.GetStageResultsResponse(job=convert.job_to_proto(view))
            chunks = self.store.stage_results(
                request.job_id, request.stage, check_job=not request.include_job
            )
            async for chunk in chunks:
                yield state_pb2.GetStageResultsResponse(
                    results=[convert.stage_result_to_proto(r) for r in chunk]
                )
        except CoreMachineError as exc:
            await context.abort(status_for(exc), str(exc))

    @map_errors
    async def AdvanceStage(self, request, context):
        advanced = await self.store.advance_stage(_require(request.job_id, "job_id"), request.stage)
        return state_pb2.AdvanceStageResponse(advanced=advanced)

    @map_errors
    async def CompleteJob(self, request, context):
        result = json.loads(request.result_json) if request.result_json else None
        view, changed = await self.store.complete_job(_require(request.job_id, "job_id"), result)
        return state_pb2.CompleteJobResponse(job=convert.job_to_proto(view), changed=changed)

    @map_errors
    async def FailJob(self, request, context):
        view, changed = await self.store.fail_job(
            _require(request.job_id, "job_id"), request.error or "failed"
        )
        return state_pb2.FailJobResponse(job=convert.job_to_proto(view), changed=changed)

    @map_errors
    async def ListTasks(self, request, context):
        tasks, token = await self.store.list_tasks(
            request.job_id or None,
            request.stage or None,
            convert.TASK_STATUS_NAME.get(request.status),
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
    return StagePolicy(retry, p.max_failed_tasks)


def _task_specs(tasks: Iterable[state_pb2.NewTask]) -> list[NewTaskSpec]:
    return [
        NewTaskSpec(
            t.task_index,
            _require(t.task_type, "task_type"),
            (t.parameters_json or b"{}").decode(),
        )
        for t in tasks
    ]
