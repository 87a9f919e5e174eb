"""The OrchestratorService gRPC edge."""

from __future__ import annotations

import json

from pydantic import ValidationError

from coremachine.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from coremachine.services.orchestrator.planner import Planner
from coremachine.services.orchestrator.registry import JobRegistry
from coremachine.shared.domain.ids import job_id_for
from coremachine.shared.errors import InvalidArgument
from coremachine.shared.grpc_errors import map_errors
from coremachine.state.v1 import state_pb2, state_pb2_grpc


def describe_validation_error(exc: ValidationError) -> tuple[str, str]:
    """A one-line message naming the offending field(s), and the first field."""
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "parameters"
        parts.append(f"{field}: {err['msg']}")
    first = ".".join(str(p) for p in exc.errors()[0]["loc"]) if exc.errors() else "parameters"
    return "; ".join(parts), first


def _nul_character_at(value: object, path: str) -> str | None:
    """The path of the first string (or key) containing U+0000, if any."""
    if isinstance(value, str):
        return (path or "parameters") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return where
            if (found := _nul_character_at(item, where)) is not None:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _nul_character_at(item, f"{path}[{i}]")) is not None:
                return found
    return None


class OrchestratorServicer(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    def __init__(
        self, registry: JobRegistry, state: state_pb2_grpc.StateServiceStub, planner: Planner
    ) -> None:
        self.registry = registry
        self.state = state
        self.planner = planner

    @map_errors
    async def SubmitJob(self, request, context):
        job_type = self.registry.get(request.job_type)
        if job_type is None:
            raise InvalidArgument(
                f"unknown job type {request.job_type!r}; known types: {', '.join(self.registry.names())}",
                "job_type",
            )
        try:
            raw = json.loads(request.parameters_json) if request.parameters_json else {}
        except ValueError as exc:
            raise InvalidArgument(f"parameters are not valid JSON: {exc}", "parameters") from None
        if not isinstance(raw, dict):
            raise InvalidArgument("parameters must be a JSON object", "parameters")
        try:
            validated = job_type.parameters.model_validate(raw)
        except ValidationError as exc:
            message, field = describe_validation_error(exc)
            raise InvalidArgument(message, field) from None
        parameters = validated.model_dump(mode="json")
        if (where := _nul_character_at(parameters, "")) is not None:
            # PostgreSQL text and jsonb cannot hold U+0000: refuse it here, by name.
            raise InvalidArgument(f"{where}: the NUL character (U+0000) is not allowed", where)
        job_id = job_id_for(job_type.name, parameters)
        response = await self.state.CreateJob(
            state_pb2.CreateJobRequest(
                job_id=job_id,
                job_type=job_type.name,
                parameters_json=json.dumps(parameters).encode(),
                total_stages=len(job_type.stages),
                metadata_json=json.dumps({"description": job_type.description}).encode(),
                # Planned here, stage 1 starts with the job: no queue round trip.
                first_stage=await self.planner.plan_first_stage(job_id, job_type, parameters),
                # Without an aggregator the state service finishes the job itself.
                default_result=job_type.aggregate is None,
            )
        )
        return orchestrator_pb2.SubmitJobResponse(job=response.job, created=response.created)

    @map_errors
    async def ListJobTypes(self, request, context):
        return orchestrator_pb2.ListJobTypesResponse(
            job_types=[
                orchestrator_pb2.JobTypeInfo(
                    job_type=jt.name,
                    description=jt.description,
                    stages=[s.name for s in jt.stages],
                    parameters_schema_json=json.dumps(jt.parameters.model_json_schema()).encode(),
                )
                for jt in self.registry.all()
            ]
        )
