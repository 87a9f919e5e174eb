"""Submitting a job: what SubmitJob, the scheduler and trigger-now share.

Parameters are validated by the job type's model, the job id is derived
(from the type and parameters, or given: a schedule's tick), stage 1 is
planned so that it starts with the job, and the job type's flow control
(priority, running limit, concurrency keys, rate limits) goes with it.
"""

from __future__ import annotations

import datetime as dt

from coremachine.app import JobType
from coremachine.app._registry import Registry
from coremachine.services.orchestrator.parameters import validate_parameters
from coremachine.services.orchestrator.planner import Planner
from coremachine.shared import tracing
from coremachine.shared.domain.ids import canonical_json, job_id_for
from coremachine.shared.domain.jobs import Job, NewJob
from coremachine.shared.domain.priorities import check_priority
from coremachine.shared.errors import InvalidArgument
from coremachine.shared.state_client import StateClient


class Submitter:
    def __init__(self, registry: Registry, state: StateClient, planner: Planner) -> None:
        self.registry = registry
        self.state = state
        self.planner = planner

    def job_type(self, name: str) -> JobType:
        job_type = self.registry.job_type(name)
        if job_type is None:
            raise InvalidArgument(
                f"unknown job type {name!r}; known types: {', '.join(self.registry.names())}",
                "job_type",
            )
        return job_type

    async def submit(
        self,
        job_type_name: str,
        parameters_json: bytes,
        *,
        priority: int | None = None,
        not_before: dt.datetime | None = None,
        job_id: str | None = None,
    ) -> tuple[Job, bool]:
        """Creates the job (idempotent on its id); returns it and whether it is new."""
        job_type = self.job_type(job_type_name)
        parameters = validate_parameters(job_type, parameters_json)
        if priority is None:
            priority = job_type.priority
        try:
            check_priority(priority)
        except ValueError as exc:
            raise InvalidArgument(str(exc), "priority") from None
        job_id = job_id or job_id_for(job_type.name, parameters)
        if tracing.enabled():
            from opentelemetry import trace

            attributes = {"coremachine.job.id": job_id, "coremachine.job.type": job_type.name}
            if tracing.record_parameters():
                attributes["coremachine.job.parameters"] = canonical_json(parameters)[:4096]
            tracing.set_attributes(trace.get_current_span(), attributes)
        delayed = not_before is not None and not_before > dt.datetime.now(dt.UTC)
        return await self.state.create_job(
            NewJob(
                job_id=job_id,
                job_type=job_type.name,
                # The canonical text: what the id was derived from, stored as is.
                parameters_json=canonical_json(parameters).encode(),
                total_stages=len(job_type.stages),
                definition=self.registry.fingerprint(job_type.name),
                description=job_type.description,
                # Planned here, stage 1 starts with the job: no queue round trip
                # (not for a job that waits for its start time or a slot).
                first_stage=None
                if delayed or job_type.max_running is not None
                else await self.planner.plan_first_stage(job_id, job_type, parameters),
                # Without an aggregator the state service finishes the job itself.
                default_result=job_type.aggregate is None,
                priority=priority,
                not_before=not_before if delayed else None,
                max_running=job_type.max_running,
                flow_limited=job_type.flow_limited,
            )
        )
