"""The public gRPC JobService (coremachine.jobs.v1): thin, over the same backends as HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import grpc

from coremachine.common.v1.common_pb2 import JOB_STATUS_CANCELLED, JOB_STATUS_FAILED
from coremachine.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from coremachine.services.api_gateway.auth import Authenticator, Role
from coremachine.services.api_gateway.backends import Backends
from coremachine.services.api_gateway.convert import (
    event_to_public,
    job_to_public,
    job_type_to_public,
    struct_to_dict,
    task_to_public,
    worker_to_public,
)
from coremachine.services.api_gateway.grpc_auth import (
    current_principal,
    map_stream_errors,
    requires,
)
from coremachine.services.api_gateway.http_context import check_job_id
from coremachine.services.api_gateway.metrics import GatewayMetrics
from coremachine.services.api_gateway.params import ParameterLimits, check_parameters
from coremachine.services.api_gateway.sse import StreamEnd, job_events
from coremachine.shared.errors import InvalidArgument
from coremachine.shared.grpc_errors import map_errors


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        backends: Backends,
        authenticator: Authenticator,
        *,
        parameter_limits: ParameterLimits | None = None,
        max_list_limit: int = 1000,
        events_poll_seconds: float = 10.0,
        stopping: asyncio.Event | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.metrics = metrics or GatewayMetrics()
        self.backends = backends
        self.authenticator = authenticator
        self.parameter_limits = parameter_limits or ParameterLimits()
        self.max_list_limit = max_list_limit
        self.events_poll_seconds = events_poll_seconds
        self.stopping = stopping or asyncio.Event()

    def _limit(self, limit: int) -> int:
        if limit < 0:
            raise InvalidArgument("limit: must be >= 0 (0 = the default)", "limit")
        return min(limit, self.max_list_limit)

    @map_errors
    @requires(Role.SUBMITTER)
    async def SubmitJob(self, request, context):
        if not request.job_type:
            raise InvalidArgument("job_type is required", "job_type")
        parameters = struct_to_dict(request.parameters)
        check_parameters(parameters, self.parameter_limits, "parameters")
        response = await self.backends.submit(request.job_type, json.dumps(parameters).encode())
        self.metrics.submitted.labels(response.job.job_type, str(response.created).lower()).inc()
        return jobs_pb2.SubmitJobResponse(job=job_to_public(response.job), created=response.created)

    @map_errors
    @requires(Role.READER)
    async def GetJob(self, request, context):
        job = await self.backends.get_job(check_job_id(request.job_id))
        return jobs_pb2.GetJobResponse(job=job_to_public(job))

    @map_errors
    @requires(Role.READER)
    async def ListJobs(self, request, context):
        response = await self.backends.list_jobs(
            request.status, request.job_type, self._limit(request.limit), request.page_token
        )
        return jobs_pb2.ListJobsResponse(
            jobs=[job_to_public(j) for j in response.jobs],
            next_page_token=response.next_page_token,
        )

    @map_errors
    @requires(Role.READER)
    async def ListTasks(self, request, context):
        if request.job_id:
            check_job_id(request.job_id)
        if request.stage < 0:
            raise InvalidArgument("stage: must be >= 1 (0 = every stage)", "stage")
        response = await self.backends.list_tasks(
            request.job_id,
            request.stage,
            request.status,
            self._limit(request.limit),
            request.page_token,
        )
        return jobs_pb2.ListTasksResponse(
            tasks=[task_to_public(t) for t in response.tasks],
            next_page_token=response.next_page_token,
        )

    @map_errors
    @requires(Role.SUBMITTER)
    async def CancelJob(self, request, context):
        response = await self.backends.cancel_job(
            check_job_id(request.job_id),
            f"cancelled through the API by {current_principal().name}",
        )
        return jobs_pb2.CancelJobResponse(job=job_to_public(response.job))

    @map_errors
    @requires(Role.SUBMITTER)
    async def ResubmitJob(self, request, context):
        check_job_id(request.job_id)
        if request.current_definition:
            rebased = await self.backends.rebase_job(request.job_id)
            if rebased.job.status not in (JOB_STATUS_FAILED, JOB_STATUS_CANCELLED):
                return jobs_pb2.ResubmitJobResponse(job=job_to_public(rebased.job))
        response = await self.backends.redrive_job(request.job_id)
        return jobs_pb2.ResubmitJobResponse(
            job=job_to_public(response.job), tasks_requeued=response.tasks_requeued
        )

    @map_stream_errors
    @requires(Role.READER)
    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[jobs_pb2.WatchJobResponse]:
        if request.after_seq < 0:
            raise InvalidArgument("after_seq: must be >= 0", "after_seq")
        events = job_events(
            self.backends,
            check_job_id(request.job_id),
            request.after_seq,
            self.events_poll_seconds,
            self.stopping,
            job_level_only=request.job_level_only,
            end_only=request.end_only,
        )
        async for item in events:
            if isinstance(item, StreamEnd):
                if request.final_job:
                    job = item.job or await self.backends.get_job(request.job_id)
                    yield jobs_pb2.WatchJobResponse(job=job_to_public(job))
                return
            if item is not None:
                yield jobs_pb2.WatchJobResponse(event=event_to_public(item))

    @map_errors
    @requires(Role.READER)
    async def ListJobTypes(self, request, context):
        infos = await self.backends.job_types()
        return jobs_pb2.ListJobTypesResponse(job_types=[job_type_to_public(i) for i in infos])

    @map_errors
    @requires(Role.READER)
    async def ListWorkers(self, request, context):
        if request.include_gone_seconds < 0:
            raise InvalidArgument("include_gone_seconds: must be >= 0", "include_gone_seconds")
        workers = await self.backends.workers(request.include_gone_seconds)
        return jobs_pb2.ListWorkersResponse(workers=[worker_to_public(w) for w in workers])

    @map_errors
    @requires(Role.READER)
    async def DiagnoseJob(self, request, context):
        diagnosis = await self.backends.diagnose_job(check_job_id(request.job_id))
        return jobs_pb2.DiagnoseJobResponse(diagnosis=diagnosis)
