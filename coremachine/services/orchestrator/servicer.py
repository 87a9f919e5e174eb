"""The OrchestratorService gRPC edge: submit, job types, rebase."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from coremachine.app import JobType
from coremachine.app._registry import Registry
from coremachine.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from coremachine.services.orchestrator.planner import Planner
from coremachine.shared import tracing
from coremachine.shared.domain.ids import canonical_json, job_id_for
from coremachine.shared.domain.jobs import NewJob
from coremachine.shared.errors import Conflict, InvalidArgument
from coremachine.shared.grpc_errors import map_errors
from coremachine.shared.state_client import StateClient
from coremachine.shared.state_clients.convert import job_to_proto


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


def validate_parameters(job_type: JobType, raw: bytes) -> dict[str, Any]:
    """The job's parameters, validated by its model, as JSON values (one parse)."""
    if raw.strip() in (b"", b"null"):
        raw = b"{}"
    if not raw.lstrip().startswith(b"{"):
        raise InvalidArgument("parameters must be a JSON object", "parameters")
    try:
        validated = job_type.parameters.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise InvalidArgument(f"parameters are not valid JSON: {exc}", "parameters") from None
        message, field = describe_validation_error(exc)
        raise InvalidArgument(message, field) from None
    parameters = validated.model_dump(mode="json")
    if (where := _nul_character_at(parameters, "")) is not None:
        # PostgreSQL text and jsonb cannot hold U+0000: refuse it here, by name.
        raise InvalidArgument(f"{where}: the NUL character (U+0000) is not allowed", where)
    return parameters


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
        if tracing.enabled():
            from opentelemetry import trace

            attributes = {"coremachine.job.id": job_id, "coremachine.job.type": job_type.name}
            if tracing.record_parameters():
                attributes["coremachine.job.parameters"] = canonical_json(parameters)[:4096]
            tracing.set_attributes(trace.get_current_span(), attributes)
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
        self.planner.metrics.submitted.labels(job_type.name, str(created).lower()).inc()
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
