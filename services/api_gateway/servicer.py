"""The public gRPC JobService (coremachine.jobs.v1)."""

from __future__ import annotations

import re

from coremachine.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from services.api_gateway.backends import Backends
from services.api_gateway.convert import job_to_public, struct_to_json_bytes
from shared.errors import InvalidArgument
from shared.grpc_errors import map_errors

_JOB_ID = re.compile(r"^[0-9a-f]{64}$")


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, backends: Backends) -> None:
        self.backends = backends

    @map_errors
    async def SubmitJob(self, request, context):
        if not request.job_type:
            raise InvalidArgument("job_type is required", "job_type")
        response = await self.backends.submit(
            request.job_type, struct_to_json_bytes(request.parameters)
        )
        return jobs_pb2.SubmitJobResponse(job=job_to_public(response.job), created=response.created)

    @map_errors
    async def GetJob(self, request, context):
        if not _JOB_ID.match(request.job_id):
            raise InvalidArgument("job_id must be 64 lower-case hex characters", "job_id")
        return jobs_pb2.GetJobResponse(
            job=job_to_public(await self.backends.get_job(request.job_id))
        )
