"""Clients of the internal services the gateway fronts (no orchestration here).

Each method is one internal RPC. Failures come back as shared.errors
(`raise_for`), so the HTTP and gRPC edges map them the same way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coremachine.common.v1 import common_pb2
from coremachine.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from coremachine.shared.grpc_channel import open_channel
from coremachine.shared.grpc_errors import raise_for
from coremachine.state.v1 import state_pb2, state_pb2_grpc

R = TypeVar("R")

# Seconds. Reads are quick; a submit may wait for the job row's creation, and
# a schema redeploy re-runs every migration.
_READ_TIMEOUT = 10.0
_WRITE_TIMEOUT = 30.0
_REDEPLOY_TIMEOUT = 120.0


async def _call(rpc: Callable[..., Awaitable[R]], request: Any, timeout: float) -> R:
    try:
        return await rpc(request, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise_for(exc)


@dataclass
class Backends:
    state: state_pb2_grpc.StateServiceStub
    orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub
    channels: dict[str, grpc.aio.Channel]

    @classmethod
    def connect(
        cls,
        state: str,
        orchestrator: str,
        worker: str,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    ) -> Backends:
        channels = {
            "state": open_channel(state, interceptors=interceptors),
            "orchestrator": open_channel(orchestrator, interceptors=interceptors),
            "worker": open_channel(worker),
        }
        return cls(
            state_pb2_grpc.StateServiceStub(channels["state"]),
            orchestrator_pb2_grpc.OrchestratorServiceStub(channels["orchestrator"]),
            channels,
        )

    # -- orchestrator ----------------------------------------------------------

    async def submit(
        self,
        job_type: str,
        parameters_json: bytes,
        priority: int | None = None,
        not_before: dt.datetime | None = None,
    ) -> orchestrator_pb2.SubmitJobResponse:
        request = orchestrator_pb2.SubmitJobRequest(
            job_type=job_type, parameters_json=parameters_json, priority=priority
        )
        if not_before is not None:
            request.not_before.FromDatetime(not_before)
        return await _call(self.orchestrator.SubmitJob, request, _WRITE_TIMEOUT)

    # -- schedules -------------------------------------------------------------

    async def create_schedule(self, schedule: common_pb2.Schedule) -> common_pb2.Schedule:
        response = await _call(
            self.orchestrator.CreateSchedule,
            orchestrator_pb2.CreateScheduleRequest(schedule=schedule),
            _WRITE_TIMEOUT,
        )
        return response.schedule

    async def trigger_schedule(self, name: str) -> orchestrator_pb2.TriggerScheduleResponse:
        return await _call(
            self.orchestrator.TriggerSchedule,
            orchestrator_pb2.TriggerScheduleRequest(name=name),
            _WRITE_TIMEOUT,
        )

    async def get_schedule(self, name: str) -> common_pb2.Schedule:
        response = await _call(
            self.state.GetSchedule, state_pb2.GetScheduleRequest(name=name), _READ_TIMEOUT
        )
        return response.schedule

    async def list_schedules(self, limit: int, page_token: str) -> state_pb2.ListSchedulesResponse:
        return await _call(
            self.state.ListSchedules,
            state_pb2.ListSchedulesRequest(limit=limit, page_token=page_token),
            _READ_TIMEOUT,
        )

    async def set_schedule_paused(self, name: str, paused: bool) -> common_pb2.Schedule:
        response = await _call(
            self.state.SetSchedulePaused,
            state_pb2.SetSchedulePausedRequest(name=name, paused=paused),
            _WRITE_TIMEOUT,
        )
        return response.schedule

    async def delete_schedule(self, name: str) -> bool:
        response = await _call(
            self.state.DeleteSchedule, state_pb2.DeleteScheduleRequest(name=name), _WRITE_TIMEOUT
        )
        return response.deleted

    async def schedule_firings(self, name: str, limit: int) -> list[common_pb2.ScheduleFiring]:
        response = await _call(
            self.state.ListFirings,
            state_pb2.ListFiringsRequest(name=name, limit=limit),
            _READ_TIMEOUT,
        )
        return list(response.firings)

    async def job_types(self, timeout: float = _READ_TIMEOUT) -> list[orchestrator_pb2.JobTypeInfo]:
        response = await _call(
            self.orchestrator.ListJobTypes, orchestrator_pb2.ListJobTypesRequest(), timeout
        )
        return list(response.job_types)

    async def rebase_job(self, job_id: str) -> orchestrator_pb2.RebaseJobResponse:
        return await _call(
            self.orchestrator.RebaseJob,
            orchestrator_pb2.RebaseJobRequest(job_id=job_id),
            _WRITE_TIMEOUT,
        )

    # -- state: jobs and tasks -------------------------------------------------

    async def get_job(self, job_id: str) -> common_pb2.Job:
        response = await _call(
            self.state.GetJob, state_pb2.GetJobRequest(job_id=job_id), _READ_TIMEOUT
        )
        return response.job

    async def list_jobs(
        self, status: common_pb2.JobStatus, job_type: str, limit: int, page_token: str
    ) -> state_pb2.ListJobsResponse:
        return await _call(
            self.state.ListJobs,
            state_pb2.ListJobsRequest(
                status=status, job_type=job_type, limit=limit, page_token=page_token
            ),
            _READ_TIMEOUT,
        )

    async def list_tasks(
        self,
        job_id: str,
        stage: int,
        status: common_pb2.TaskStatus,
        limit: int,
        page_token: str,
    ) -> state_pb2.ListTasksResponse:
        return await _call(
            self.state.ListTasks,
            state_pb2.ListTasksRequest(
                job_id=job_id, stage=stage, status=status, limit=limit, page_token=page_token
            ),
            _READ_TIMEOUT,
        )

    async def cancel_job(self, job_id: str, reason: str) -> state_pb2.CancelJobResponse:
        return await _call(
            self.state.CancelJob,
            state_pb2.CancelJobRequest(job_id=job_id, reason=reason),
            _WRITE_TIMEOUT,
        )

    async def redrive_job(self, job_id: str) -> state_pb2.RedriveJobResponse:
        return await _call(
            self.state.RedriveJob, state_pb2.RedriveJobRequest(job_id=job_id), _WRITE_TIMEOUT
        )

    async def list_events(
        self,
        job_id: str,
        after_seq: int,
        limit: int = 500,
        wait_seconds: float = 0.0,
        job_level_only: bool = False,
        end_only: bool = False,
    ) -> state_pb2.ListEventsResponse:
        """Events after after_seq; with wait_seconds, a long poll for the next one."""
        return await _call(
            self.state.ListEvents,
            state_pb2.ListEventsRequest(
                job_id=job_id,
                after_seq=after_seq,
                limit=limit,
                wait_ms=int(wait_seconds * 1000),
                job_level_only=job_level_only,
                end_only=end_only,
            ),
            _READ_TIMEOUT + wait_seconds,
        )

    async def diagnose_job(self, job_id: str) -> common_pb2.JobDiagnosis:
        response = await _call(
            self.state.DiagnoseJob, state_pb2.DiagnoseJobRequest(job_id=job_id), _READ_TIMEOUT
        )
        return response.diagnosis

    async def workers(self, include_gone_seconds: int = 0) -> list[state_pb2.WorkerInfo]:
        response = await _call(
            self.state.ListWorkers,
            state_pb2.ListWorkersRequest(include_gone_seconds=include_gone_seconds),
            _READ_TIMEOUT,
        )
        return list(response.workers)

    # -- state: operations -----------------------------------------------------

    async def stats(self) -> state_pb2.GetStatsResponse:
        return await _call(self.state.GetStats, state_pb2.GetStatsRequest(), _READ_TIMEOUT)

    async def dependencies(self) -> state_pb2.CheckDependenciesResponse:
        # Short: a health probe must answer before the prober gives up.
        return await _call(self.state.CheckDependencies, state_pb2.CheckDependenciesRequest(), 5.0)

    async def task_failures(self, job_id: str, limit: int) -> state_pb2.ListTaskFailuresResponse:
        return await _call(
            self.state.ListTaskFailures,
            state_pb2.ListTaskFailuresRequest(job_id=job_id, limit=limit),
            _READ_TIMEOUT,
        )

    async def queues(self) -> list[state_pb2.QueueInfo]:
        response = await _call(self.state.ListQueues, state_pb2.ListQueuesRequest(), _READ_TIMEOUT)
        return list(response.queues)

    async def dead_letters(self, queue: str, limit: int) -> list[state_pb2.DeadLetterMessage]:
        response = await _call(
            self.state.ListDeadLetters,
            state_pb2.ListDeadLettersRequest(queue=queue, limit=limit),
            _READ_TIMEOUT,
        )
        return list(response.messages)

    async def replay_dead_letters(self, queue: str, sequences: list[str]) -> int:
        response = await _call(
            self.state.ReplayDeadLetters,
            state_pb2.ReplayDeadLettersRequest(queue=queue, sequences=sequences),
            _WRITE_TIMEOUT,
        )
        return response.replayed

    async def fail_dead_letters(
        self, queue: str, sequences: list[str], reason: str
    ) -> state_pb2.FailDeadLettersResponse:
        return await _call(
            self.state.FailDeadLetters,
            state_pb2.FailDeadLettersRequest(queue=queue, sequences=sequences, reason=reason),
            _WRITE_TIMEOUT,
        )

    async def redeploy_schema(self) -> list[int]:
        response = await _call(
            self.state.RedeploySchema,
            state_pb2.RedeploySchemaRequest(confirm=True),
            _REDEPLOY_TIMEOUT,
        )
        return list(response.migrations_applied)

    # -- health ----------------------------------------------------------------

    async def health(self) -> dict[str, str]:
        """gRPC health of each internal service: "serving" or why not."""
        names = list(self.channels)
        results = await asyncio.gather(*(self._health_of(self.channels[n]) for n in names))
        return dict(zip(names, results, strict=True))

    @staticmethod
    async def _health_of(channel: grpc.aio.Channel) -> str:
        try:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        except grpc.aio.AioRpcError as exc:
            return f"unreachable: {exc.code().name}"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status).lower()

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
