"""The state-client port over gRPC: the real state service.

Every call carries a deadline. Failures become shared.errors: NOT_FOUND ->
NotFound, INVALID_ARGUMENT -> InvalidArgument, FAILED_PRECONDITION ->
Conflict, UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED -> Unavailable (try
again later), RESOURCE_EXHAUSTED -> Overloaded (refused at once, so that the
orchestrator's caller gets its 503 at once too), anything else -> Internal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import grpc

from coremachine.shared.domain.jobs import Job, JobTypeDefinition, NewJob, StagePlan
from coremachine.shared.domain.schedules import Firing, Schedule
from coremachine.shared.domain.tasks import (
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
from coremachine.shared.errors import (
    Conflict,
    CoreMachineError,
    Internal,
    InvalidArgument,
    NotFound,
    Overloaded,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from coremachine.shared.state_clients import convert
from coremachine.shared.status_codes import task_status_to_proto
from coremachine.state.v1 import state_pb2, state_pb2_grpc

# Seconds. Reads and claims are quick; a transaction over a large batch of
# outcomes, or a stage chunk of thousands of tasks, may take longer.
READ_TIMEOUT = 10.0
WRITE_TIMEOUT = 30.0

_ERRORS: dict[grpc.StatusCode, type[CoreMachineError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.CANCELLED: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}

P = ParamSpec("P")
R = TypeVar("R")


def domain_error(error: grpc.aio.AioRpcError) -> CoreMachineError:
    """The shared.errors exception for a failed call."""
    kind = _ERRORS.get(error.code(), Internal)
    return kind(f"state service: {error.code().name}: {error.details() or ''}".rstrip(": "))


def _mapped(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except grpc.aio.AioRpcError as exc:
            raise domain_error(exc) from exc

    return wrapper


class GrpcStateClient:
    """StateClient on a channel to the state service (the caller owns the channel)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.stub = state_pb2_grpc.StateServiceStub(channel)

    async def close(self) -> None:
        await self.channel.close()

    # -- jobs ------------------------------------------------------------------

    @_mapped
    async def create_job(self, job: NewJob) -> tuple[Job, bool]:
        response = await self.stub.CreateJob(convert.new_job_to_proto(job), timeout=WRITE_TIMEOUT)
        return convert.job_from_proto(response.job), response.created

    @_mapped
    async def get_job(self, job_id: str) -> Job:
        response = await self.stub.GetJob(
            state_pb2.GetJobRequest(job_id=job_id), timeout=READ_TIMEOUT
        )
        return convert.job_from_proto(response.job)

    @_mapped
    async def job_and_stage_results(self, job_id: str, stage: int) -> tuple[Job, list[StageResult]]:
        if stage < 1:
            return await self.get_job(job_id), []
        job: Job | None = None
        results: list[StageResult] = []
        call = self.stub.GetStageResults(
            state_pb2.GetStageResultsRequest(job_id=job_id, stage=stage, include_job=True),
            timeout=WRITE_TIMEOUT,
        )
        async for chunk in call:
            if chunk.HasField("job"):
                job = convert.job_from_proto(chunk.job)
            results.extend(convert.stage_result_from_proto(r) for r in chunk.results)
        if job is None:
            raise Internal("GetStageResults with include_job sent no job")
        return job, results

    @_mapped
    async def stage_results(
        self, job_id: str, stage: int, *, from_index: int = 0, limit: int = 0
    ) -> list[StageResult]:
        call = self.stub.GetStageResults(
            state_pb2.GetStageResultsRequest(
                job_id=job_id, stage=stage, from_index=from_index, limit=limit
            ),
            timeout=WRITE_TIMEOUT,
        )
        return [convert.stage_result_from_proto(r) async for chunk in call for r in chunk.results]

    @_mapped
    async def create_stage_tasks(self, job_id: str, stage: int, plan: StagePlan) -> int:
        response = await self.stub.CreateStageTasks(
            state_pb2.CreateStageTasksRequest(
                job_id=job_id,
                stage=stage,
                total_tasks=plan.total_tasks,
                tasks=convert.new_tasks_to_proto(plan),
                policy=convert.policy_to_proto(plan),
            ),
            timeout=WRITE_TIMEOUT,
        )
        return response.created

    @_mapped
    async def complete_job(self, job_id: str, result_json: bytes) -> bool:
        response = await self.stub.CompleteJob(
            state_pb2.CompleteJobRequest(job_id=job_id, result_json=result_json),
            timeout=WRITE_TIMEOUT,
        )
        return response.changed

    @_mapped
    async def fail_job(self, job_id: str, error: str) -> bool:
        response = await self.stub.FailJob(
            state_pb2.FailJobRequest(job_id=job_id, error=error), timeout=WRITE_TIMEOUT
        )
        return response.changed

    @_mapped
    async def failed_tasks(self, job_id: str) -> list[FailedTask]:
        failed: list[FailedTask] = []
        token = ""
        while True:
            page = await self.stub.ListTasks(
                state_pb2.ListTasksRequest(
                    job_id=job_id,
                    status=task_status_to_proto("failed"),
                    limit=1000,
                    page_token=token,
                ),
                timeout=READ_TIMEOUT,
            )
            failed += [FailedTask(t.task_id, t.stage, t.task_index, t.error) for t in page.tasks]
            token = page.next_page_token
            if not token:
                return failed

    # -- definitions -----------------------------------------------------------

    @_mapped
    async def register_orchestrator(
        self,
        orchestrator_id: str,
        host: str,
        version: str,
        definitions: Sequence[JobTypeDefinition],
        ttl_seconds: int,
        stopping: bool = False,
    ) -> int:
        response = await self.stub.RegisterOrchestrator(
            state_pb2.RegisterOrchestratorRequest(
                orchestrator_id=orchestrator_id,
                host=host,
                version=version,
                job_types=[convert.definition_to_proto(d) for d in definitions],
                ttl_seconds=ttl_seconds,
                stopping=stopping,
            ),
            timeout=WRITE_TIMEOUT,
        )
        return response.released

    @_mapped
    async def park_job_message(
        self,
        job_id: str,
        job_type: str,
        definition: str,
        message_id: str,
        body: bytes,
        orchestrator_id: str,
    ) -> tuple[bool, str]:
        response = await self.stub.ParkJobMessage(
            state_pb2.ParkJobMessageRequest(
                job_id=job_id,
                job_type=job_type,
                definition=definition,
                message_id=message_id,
                body=body,
                orchestrator_id=orchestrator_id,
            ),
            timeout=WRITE_TIMEOUT,
        )
        return response.parked, response.reason

    @_mapped
    async def rebase_job(
        self, job_id: str, definition: str, total_stages: int, default_result: bool
    ) -> tuple[Job, int]:
        response = await self.stub.RebaseJob(
            state_pb2.RebaseJobRequest(
                job_id=job_id,
                definition=definition,
                total_stages=total_stages,
                default_result=default_result,
            ),
            timeout=WRITE_TIMEOUT,
        )
        return convert.job_from_proto(response.job), response.released

    # -- tasks -----------------------------------------------------------------

    @_mapped
    async def claim_tasks(
        self, worker_id: str, lease_seconds: int, claims: Sequence[TaskClaim]
    ) -> list[ClaimResult]:
        response = await self.stub.ClaimTasks(
            state_pb2.ClaimTasksRequest(
                worker_id=worker_id,
                lease_seconds=lease_seconds,
                claims=[state_pb2.TaskClaim(task_id=c.task_id, attempt=c.attempt) for c in claims],
            ),
            timeout=WRITE_TIMEOUT,
        )
        return [convert.claim_from_proto(r) for r in response.results]

    @_mapped
    async def complete_tasks(self, outcomes: Sequence[TaskOutcome]) -> list[OutcomeAck]:
        response = await self.stub.CompleteTasks(
            state_pb2.CompleteTasksRequest(
                outcomes=[
                    state_pb2.TaskOutcome(
                        task_id=o.task_id,
                        lease_token=o.lease_token,
                        succeeded=o.succeeded,
                        result_json=o.result_json,
                        error=o.error,
                        retryable=o.retryable,
                        trace_context=o.trace_context,
                    )
                    for o in outcomes
                ]
            ),
            timeout=WRITE_TIMEOUT,
        )
        return [OutcomeAck(r.task_id, r.accepted, r.task_status) for r in response.results]

    @_mapped
    async def renew_leases(self, lease_seconds: int, leases: Sequence[TaskLease]) -> LeaseRenewal:
        response = await self.stub.RenewLeases(
            state_pb2.RenewLeasesRequest(
                lease_seconds=lease_seconds, leases=[_lease(lease) for lease in leases]
            ),
            timeout=READ_TIMEOUT,
        )
        return LeaseRenewal(
            tuple(response.renewed), tuple(response.lost), tuple(response.cancelled)
        )

    @_mapped
    async def release_tasks(self, leases: Sequence[TaskLease]) -> list[str]:
        response = await self.stub.ReleaseTasks(
            state_pb2.ReleaseTasksRequest(leases=[_lease(lease) for lease in leases]),
            timeout=READ_TIMEOUT,
        )
        return list(response.released)

    @_mapped
    async def report_progress(self, reports: Sequence[ProgressReport]) -> int:
        response = await self.stub.ReportProgress(
            state_pb2.ReportProgressRequest(
                reports=[
                    state_pb2.TaskProgress(
                        task_id=r.task_id,
                        lease_token=r.lease_token,
                        current=r.current,
                        total=r.total or 0.0,
                        message=r.message,
                    )
                    for r in reports
                ]
            ),
            timeout=READ_TIMEOUT,
        )
        return response.recorded

    @_mapped
    async def heartbeat_worker(
        self, worker: WorkerInfo, ttl_seconds: int, stopping: bool = False
    ) -> None:
        await self.stub.HeartbeatWorker(
            state_pb2.HeartbeatWorkerRequest(
                worker=convert.worker_to_proto(worker), ttl_seconds=ttl_seconds, stopping=stopping
            ),
            timeout=READ_TIMEOUT,
        )

    # -- schedules (orchestrator) --------------------------------------------

    @_mapped
    async def create_schedule(self, schedule: Schedule) -> Schedule:
        response = await self.stub.CreateSchedule(
            state_pb2.CreateScheduleRequest(schedule=convert.schedule_to_proto(schedule)),
            timeout=WRITE_TIMEOUT,
        )
        return convert.schedule_from_proto(response.schedule)

    @_mapped
    async def trigger_schedule(self, name: str, orchestrator_id: str, lease_seconds: int) -> Firing:
        response = await self.stub.TriggerSchedule(
            state_pb2.TriggerScheduleRequest(
                name=name, orchestrator_id=orchestrator_id, lease_seconds=lease_seconds
            ),
            timeout=WRITE_TIMEOUT,
        )
        return convert.firing_from_proto(response.firing)

    @_mapped
    async def claim_due_firings(
        self, orchestrator_id: str, job_types: Sequence[str], limit: int, lease_seconds: int
    ) -> tuple[list[Firing], float | None]:
        response = await self.stub.ClaimDueFirings(
            state_pb2.ClaimDueFiringsRequest(
                orchestrator_id=orchestrator_id,
                job_types=list(job_types),
                limit=limit,
                lease_seconds=lease_seconds,
            ),
            timeout=WRITE_TIMEOUT,
        )
        wait = response.next_due_in_ms / 1000 if response.next_due_in_ms else None
        return [convert.firing_from_proto(f) for f in response.firings], wait

    @_mapped
    async def record_firing(
        self, firing: Firing, outcome: str, job_id: str = "", detail: str = ""
    ) -> bool:
        response = await self.stub.RecordFiring(
            state_pb2.RecordFiringRequest(
                schedule=firing.schedule,
                tick_at=convert.timestamp_of(firing.tick_at),
                outcome=outcome,
                job_id=job_id,
                detail=detail,
            ),
            timeout=WRITE_TIMEOUT,
        )
        return response.recorded


def _lease(lease: TaskLease) -> state_pb2.TaskLease:
    return state_pb2.TaskLease(task_id=lease.task_id, lease_token=lease.lease_token)
