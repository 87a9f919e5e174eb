"""Clients of the internal services the gateway fronts (no orchestration here)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coremachine.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from coremachine.state.v1 import state_pb2, state_pb2_grpc
from shared.grpc_channel import open_channel
from shared.grpc_errors import raise_for


@dataclass
class Backends:
    state: state_pb2_grpc.StateServiceStub
    orchestrator: orchestrator_pb2_grpc.OrchestratorServiceStub
    channels: dict[str, grpc.aio.Channel]

    @classmethod
    def connect(cls, state: str, orchestrator: str, worker: str) -> Backends:
        channels = {
            "state": open_channel(state),
            "orchestrator": open_channel(orchestrator),
            "worker": open_channel(worker),
        }
        return cls(
            state_pb2_grpc.StateServiceStub(channels["state"]),
            orchestrator_pb2_grpc.OrchestratorServiceStub(channels["orchestrator"]),
            channels,
        )

    async def submit(self, job_type: str, parameters_json: bytes):
        try:
            return await self.orchestrator.SubmitJob(
                orchestrator_pb2.SubmitJobRequest(
                    job_type=job_type, parameters_json=parameters_json
                ),
                timeout=30,
            )
        except grpc.aio.AioRpcError as exc:
            raise_for(exc)

    async def get_job(self, job_id: str):
        try:
            return (await self.state.GetJob(state_pb2.GetJobRequest(job_id=job_id), timeout=10)).job
        except grpc.aio.AioRpcError as exc:
            raise_for(exc)

    async def health(self) -> dict[str, str]:
        """gRPC health of each internal service: "serving" or why not."""
        out = {}
        for name, channel in self.channels.items():
            try:
                response = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=2
                )
                out[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(
                    response.status
                ).lower()
            except grpc.aio.AioRpcError as exc:
                out[name] = f"unreachable: {exc.code().name}"
        return out

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()
