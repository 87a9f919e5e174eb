"""Extra replicas of a stack's services, as more processes on free ports.

The Stack runs one process per service; flow-control tests need two state
services and two orchestrators (and several workers) on the same database,
as production runs them. Each replica gets its own port (and id); an
orchestrator or worker replica may talk to a state replica of its own.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coremachine.stack.processes import Stack, free_port

_PORT_ENV = {
    "state": "STATE_GRPC_PORT",
    "orchestrator": "ORCHESTRATOR_GRPC_PORT",
    "worker": "WORKER_GRPC_PORT",
}
# Each replica serves /metrics on a port of its own (0 would turn it off).
_METRICS_PORT_ENV = {
    "state": "STATE_METRICS_PORT",
    "orchestrator": "ORCHESTRATOR_METRICS_PORT",
    "worker": "WORKER_METRICS_PORT",
}


@dataclass
class Replica:
    service: str
    name: str
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Replicas:
    stack: Stack
    replicas: list[Replica] = field(default_factory=list)

    def add(self, service: str, name: str, **env: str) -> Replica:
        replica = Replica(service, name, free_port(), env)
        self.replicas.append(replica)
        self.start(replica)
        return replica

    def start(self, replica: Replica) -> None:
        log = open(self.stack.log_dir / f"{replica.name}.log", "ab")  # noqa: SIM115 (the child's)
        env = {
            **self.stack.env_for(replica.service),
            _PORT_ENV[replica.service]: str(replica.port),
            _METRICS_PORT_ENV[replica.service]: str(free_port()),
            **replica.env,
        }
        replica.proc = subprocess.Popen(
            [sys.executable, "-m", f"coremachine.services.{replica.service}"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_serving(replica)

    def stop(self, replica: Replica, timeout: float = 30.0) -> int | None:
        proc = replica.proc
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def stop_all(self) -> None:
        for replica in reversed(self.replicas):
            self.stop(replica)


def wait_serving(replica: Replica, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(replica.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            assert replica.proc is not None
            if replica.proc.poll() is not None:
                raise RuntimeError(f"{replica.name} exited with {replica.proc.returncode}")
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{replica.name} did not become healthy within {timeout}s")
            time.sleep(0.1)
