"""The OrchestratorService gRPC edge: submit, job types, rebase."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from coremachine.app import JobType
from coremachine.app._registry import Registry
from coremachine.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from coremachine.services.orchestrator.planner import Planner
from coremachine.shared.domain.ids import canonical_json, job_id_for
from coremachine.shared.domain.jobs import NewJob
from coremachine.shared.errors import Conflict, InvalidArgument
from coremachine.shared.grpc_errors import map_errors
from coremachine.shared.state_client import StateClient
from coremachine.shared.state_clients.convert import job_to_proto


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(self, registry: Registry, state: StateClient, planner: Planner) -> None:
        self.registry = registry
        self.state = state
        self.planner = planner

    def _job_type(self, name: str) -> JobType:
        job_type = self.registry.job_type(name)
        if job_type is None:
            raise InvalidArgument(
                f"unknown job type {name!r}; known types: {', '.join(self.registry.names())}",
                "job_type",
            )
        return job_type

    @map_errors
    async def SubmitJob(self, request, context):
        job_type = self._job_type(request.job_type)
        parameters = validate_parameters(job_type, request.parameters_json)
        job_id = job_id_for(job_type.name, parameters)
        job, created = await self.state.create_job(
            NewJob(
                job_id=job_id,
                job_type=job_type.name,
                # The canonical text: what the id was derived from, stored as is.
                parameters_json=canonical_json(parameters).encode(),
                total_stages=len(job_type.stages),
                definition=self.registry.fingerprint(job_type.name),
                description=job_type.description,
                # Planned here, stage 1 starts with the job: no queue round trip.
                first_stage=await self.planner.plan_first_stage(job_id, job_type, parameters),
                # Without an aggregator the state service finishes the job itself.
                default_result=job_type.aggregate is None,
            )
        )
        return orchestrator_pb2.SubmitJobResponse(job=job_to_proto(job), created=created)

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
