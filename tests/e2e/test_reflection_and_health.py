"""Every service serves the standard gRPC health service and server reflection."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

pytestmark = pytest.mark.e2e

EXPECTED = {
    "state": "coremachine.state.v1.StateService",
    "orchestrator": "coremachine.orchestrator.v1.OrchestratorService",
    "worker": "grpc.health.v1.Health",
    "api_gateway": "coremachine.jobs.v1.JobService",
}


@pytest.mark.parametrize("service", list(EXPECTED))
def test_health_and_reflection_list_the_service(stack, service):
    with grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port_of(service)}") as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        [response] = list(
            reflection.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
        names = {s.name for s in response.list_services_response.service}
    assert EXPECTED[service] in names
    assert "grpc.reflection.v1alpha.ServerReflection" in names
