"""The OrchestratorService gRPC edge: submit, job types, rebase, schedules."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

from coremachine.app import JobType
from coremachine.app._registry import Registry
from coremachine.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from coremachine.services.orchestrator.parameters import validate_parameters
from coremachine.services.orchestrator.planner import Planner
from coremachine.services.orchestrator.scheduler import Scheduler
from coremachine.services.orchestrator.submission import Submitter
from coremachine.shared.errors import Conflict, InvalidArgument
from coremachine.shared.grpc_errors import map_errors
from coremachine.shared.state_client import StateClient
from coremachine.shared.state_clients.convert import (
    firing_to_proto,
    job_to_proto,
    schedule_from_proto,
    schedule_to_proto,
)


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(
        self,
        registry: Registry,
        state: StateClient,
        planner: Planner,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.registry = registry
        self.state = state
        self.planner = planner
        self.submitter = Submitter(registry, state, planner)
        self.scheduler = scheduler

    def _job_type(self, name: str) -> JobType:
        return self.submitter.job_type(name)

    @map_errors
    async def SubmitJob(self, request, context):
        job, created = await self.submitter.submit(
            request.job_type,
            request.parameters_json,
            priority=request.priority if request.HasField("priority") else None,
            not_before=request.not_before.ToDatetime(tzinfo=dt.UTC)
            if request.HasField("not_before")
            else None,
        )
        self.planner.metrics.submitted.labels(job.job_type, str(created).lower()).inc()
        return orchestrator_pb2.SubmitJobResponse(job=job_to_proto(job), created=created)

    @map_errors
    async def CreateSchedule(self, request, context):
        """The job type and parameters are checked here, as at submit; the
        state service checks the timing and stores it."""
        schedule = schedule_from_proto(request.schedule)
        job_type = self._job_type(schedule.job_type)
        parameters = validate_parameters(job_type, json.dumps(schedule.parameters).encode())
        created = await self.state.create_schedule(
            dataclasses.replace(schedule, parameters=parameters)
        )
        return orchestrator_pb2.CreateScheduleResponse(schedule=schedule_to_proto(created))

    @map_errors
    async def TriggerSchedule(self, request, context):
        if not request.name:
            raise InvalidArgument("name is required", "name")
        if self.scheduler is None:
            raise InvalidArgument("this orchestrator runs no scheduler", "name")
        firing, job = await self.scheduler.trigger(request.name)
        return orchestrator_pb2.TriggerScheduleResponse(
            firing=firing_to_proto(firing), job=job_to_proto(job) if job else None
        )

    @map_errors
    async def ListJobTypes(self, request, context):
        return orchestrator_pb2.ListJobTypesResponse(
            job_types=[
                orchestrator_pb2.JobTypeInfo(
                    job_type=jt.name,
                    description=jt.description,
                    stages=[s.name for s in jt.stages],
                    parameters_schema_json=json.dumps(jt.parameters_schema()).encode(),
                    fingerprint=self.registry.fingerprint(jt.name),
                    stage_info=[
                        orchestrator_pb2.StageInfo(
                            name=s.name,
                            task_type=s.task_type,
                            queue=self.registry.queue_of(s, self.planner.defaults.tasks_queue),
                            fan_out=s.fan_out.describe()["mode"],
                        )
                        for s in jt.stages
                    ],
                    app=jt.app,
                )
                for jt in self.registry.job_types()
            ]
        )

    @map_errors
    async def RebaseJob(self, request, context):
        if not request.job_id:
            raise InvalidArgument("job_id is required", "job_id")
        current = await self.state.get_job(request.job_id)
        job_type = self._job_type(current.job_type)
        try:
            validate_parameters(job_type, json.dumps(current.parameters).encode())
        except InvalidArgument as exc:
            raise Conflict(
                f"job {current.job_id}'s parameters do not fit the definition served here: {exc}"
            ) from None
        job, released = await self.state.rebase_job(
            current.job_id,
            self.registry.fingerprint(job_type.name),
            len(job_type.stages),
            job_type.aggregate is None,
        )
        return orchestrator_pb2.RebaseJobResponse(job=job_to_proto(job), released=released)
