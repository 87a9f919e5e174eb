"""Runs the four services as separate processes: `coremachine-server up|run`, the e2e tests.

The stack resolves the database (DATABASE_URL, or the embedded PostgreSQL),
applies migrations with the real `migrate` command, starts each service with
its own environment, and waits for the gRPC health checks to say SERVING.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coremachine.services.api_gateway.auth import hash_key


def data_dir() -> Path:
    """Where the local stack keeps its embedded database and logs:
    COREMACHINE_DATA_DIR, else `.data` in the current directory."""
    return Path(os.environ.get("COREMACHINE_DATA_DIR") or Path.cwd() / ".data").resolve()


SERVICES = ("state", "orchestrator", "worker", "api_gateway")
ROLES = ("reader", "submitter", "admin")


def generate_api_keys() -> dict[str, str]:
    """One fresh key per role for this stack; COREMACHINE_API_KEY fixes the admin key."""
    keys = {role: secrets.token_urlsafe(32) for role in ROLES}
    keys["admin"] = os.environ.get("COREMACHINE_API_KEY") or keys["admin"]
    return keys


def api_keys_secret(keys: dict[str, str]) -> str:
    """The gateway's `api-keys` secret: names, roles and SHA-256 hashes, never the keys."""
    return json.dumps(
        [
            {
                "name": f"stack-{role}",
                "role": role,
                "sha256": hash_key(key),
            }
            for role, key in keys.items()
        ]
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ports:
    state: int = 50061
    orchestrator: int = 50062
    worker: int = 50063
    gateway_grpc: int = 50051
    gateway_http: int = 8080
    # Prometheus /metrics of each service.
    state_metrics: int = 9461
    orchestrator_metrics: int = 9462
    worker_metrics: int = 9463
    gateway_metrics: int = 9460

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in range(9)))

    def metrics_of(self, service: str) -> int:
        return {
            "state": self.state_metrics,
            "orchestrator": self.orchestrator_metrics,
            "worker": self.worker_metrics,
            "api_gateway": self.gateway_metrics,
        }[service]


@dataclass
class Stack:
    database_url: str
    ports: Ports = field(default_factory=Ports)
    log_dir: Path = field(default_factory=lambda: data_dir() / "logs")
    extra_env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # role -> key; the gateway only ever sees their hashes.
    api_keys: dict[str, str] = field(default_factory=generate_api_keys)

    @property
    def api_key(self) -> str:
        """The stack's admin key (send as `Authorization: Bearer <key>`)."""
        return self.api_keys["admin"]

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway_http}"

    def metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports.metrics_of(service)}/metrics"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.ports.gateway_grpc}"

    def grpc_port_of(self, service: str) -> int:
        return {
            "state": self.ports.state,
            "orchestrator": self.ports.orchestrator,
            "worker": self.ports.worker,
            "api_gateway": self.ports.gateway_grpc,
        }[service]

    def env_for(self, service: str) -> dict[str, str]:
        # The gateway's env secrets provider reads the secret `api-keys` from API_KEYS.
        auth = {"API_KEYS": api_keys_secret(self.api_keys)} if service == "api_gateway" else {}
        env = {
            **os.environ,
            "BROKER_DATABASE_URL": self.database_url,
            "STATE_GRPC_PORT": str(self.ports.state),
            "ORCHESTRATOR_GRPC_PORT": str(self.ports.orchestrator),
            "WORKER_GRPC_PORT": str(self.ports.worker),
            "GATEWAY_GRPC_PORT": str(self.ports.gateway_grpc),
            "GATEWAY_HTTP_PORT": str(self.ports.gateway_http),
            "STATE_METRICS_PORT": str(self.ports.state_metrics),
            "ORCHESTRATOR_METRICS_PORT": str(self.ports.orchestrator_metrics),
            "WORKER_METRICS_PORT": str(self.ports.worker_metrics),
            "GATEWAY_METRICS_PORT": str(self.ports.gateway_metrics),
            "STATE_ADDRESS": f"127.0.0.1:{self.ports.state}",
            "ORCHESTRATOR_ADDRESS": f"127.0.0.1:{self.ports.orchestrator}",
            "WORKER_ADDRESS": f"127.0.0.1:{self.ports.worker}",
            **auth,
            **self.extra_env,
            **self.service_env.get(service, {}),
        }
        # Only the state service may open the jobs/tasks database.
        if service == "state":
            env["DATABASE_URL"] = self.database_url
        else:
            env.pop("DATABASE_URL", None)
        return env

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "coremachine.services.state", "migrate"],
            env=self.env_for("state"),
            check=True,
        )

    def start(self, service: str) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{service}.log", "ab")  # noqa: SIM115 (owned by the child)
        proc = subprocess.Popen(
            [sys.executable, "-m", f"coremachine.services.{service}"],
            env=self.env_for(service),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[service] = proc
        return proc

    def wait_serving(self, service: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        address = f"127.0.0.1:{self.grpc_port_of(service)}"
        with grpc.insecure_channel(address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                proc = self.procs.get(service)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(
                        f"{service} exited with {proc.returncode}; see {self.log_dir / (service + '.log')}"
                    )
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} did not become healthy within {timeout}s")
                time.sleep(0.1)

    def up(self, migrate: bool = True) -> None:
        if migrate:
            self.migrate()
        try:
            for service in SERVICES:
                self.start(service)
            for service in SERVICES:
                self.wait_serving(service)
        except BaseException:
            # Never leave half a stack running behind a failed start.
            self.stop(timeout=10)
            raise

    def kill(self, service: str) -> None:
        """kill -9: no shutdown handler runs."""
        proc = self.procs[service]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def restart(self, service: str) -> None:
        self.start(service)
        self.wait_serving(service)

    def stop(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGTERM the services front to back, each after the previous one exited.

        The gateway goes first (no new work), the state service last, so that
        the worker can still report what it finishes during its grace period.
        """
        codes: dict[str, int | None] = {}
        for service in reversed(SERVICES):
            proc = self.procs.get(service)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes[service] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[service] = proc.wait()
        return codes
