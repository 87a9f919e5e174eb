"""Runs the services as separate processes: `coremachine-server up|run`, the e2e tests.

The stack resolves the database (DATABASE_URL, or the embedded PostgreSQL),
applies migrations with the real `migrate` command, starts each replica of
each service with its own environment, and waits for the gRPC health checks
to say SERVING.

Replicas: each service runs as one or more processes, each from a `Replica`
that can carry environment variables of its own (for example two worker
pools with different WORKER_QUEUES):

    Stack(url, replicas={"state": 2, "worker": [Replica({"WORKER_QUEUES": "tasks"}),
                                                  Replica({"WORKER_QUEUES": "gpu"})]})

A service with one replica names it after itself ("worker"); with several
they are "worker-1", "worker-2", ...; every method that takes a replica's
name also takes a service's, meaning all of its replicas. Clients reach the replicas of a
service through one gRPC target listing them all (round_robin, see
shared/grpc_channel.py).

`supervise()` keeps the stack running: a process that exits is restarted
with backoff, and the restart is reported.
"""

from __future__ import annotations

import functools
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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

# Supervision: the first restart after 0.5 s, doubling up to 30 s for a
# process that keeps dying; one that ran this long starts again from 0.5 s.
RESTART_BACKOFF = 0.5
MAX_RESTART_BACKOFF = 30.0
RESTART_RESET_AFTER = 30.0


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


# Ports handed out by free_port in this process, never handed out twice.
_handed_out: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a service to listen on, below the
    kernel's ephemeral range: a port the kernel picked (bind to 0) is one it
    may also give a new outgoing connection before the service binds it, and
    a stack opening hundreds of connections then fails to start, now and
    then, with "address already in use"."""
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(max(1024, low - 20_000), low)
        if port not in _handed_out and _bindable(port):
            _handed_out.add(port)
            return port
    with socket.socket() as s:  # a crowded machine: what the kernel offers
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@functools.cache  # read once: the range does not change under a running process
def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default range starts here; elsewhere, a guess


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Ports:
    """The first replica's ports; replica i (from 0) listens on port + i * step
    (the default step keeps every service's replicas clear of the others' ports).

    `Ports.free()` instead gives every replica free ports of its own.
    """

    state: int = 50061
    orchestrator: int = 50062
    worker: int = 50063
    gateway_grpc: int = 50051
    gateway_http: int = 8080
    # Prometheus /metrics of each service (replicas: the same step apart).
    state_metrics: int = 9461
    orchestrator_metrics: int = 9462
    worker_metrics: int = 9463
    gateway_metrics: int = 9460
    step: int = 100
    free_for_replicas: bool = False

    @classmethod
    def free(cls) -> Ports:
        names = (
            "state",
            "orchestrator",
            "worker",
            "gateway_grpc",
            "gateway_http",
            "state_metrics",
            "orchestrator_metrics",
            "worker_metrics",
            "gateway_metrics",
        )
        return cls(**{name: free_port() for name in names}, free_for_replicas=True)  # type: ignore[arg-type]

    def base_of(self, service: str) -> int:
        return {
            "state": self.state,
            "orchestrator": self.orchestrator,
            "worker": self.worker,
            "api_gateway": self.gateway_grpc,
        }[service]

    def metrics_of(self, service: str) -> int:
        return {
            "state": self.state_metrics,
            "orchestrator": self.orchestrator_metrics,
            "worker": self.worker_metrics,
            "api_gateway": self.gateway_metrics,
        }[service]


@dataclass(frozen=True)
class Replica:
    """One process of a service, with environment variables of its own."""

    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Process:
    """A replica of the stack: where it listens, and its process once started."""

    name: str
    service: str
    index: int
    replica: Replica
    grpc_port: int
    metrics_port: int
    http_port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    # When the supervisor may start it again after it exited (None: not due).
    restart_at: float | None = None
    backoff: float = RESTART_BACKOFF


def replica_name(service: str, index: int, count: int) -> str:
    return service if count == 1 else f"{service}-{index + 1}"


def _target(ports: Sequence[int]) -> str:
    """One gRPC target for every replica of a service."""
    if len(ports) == 1:
        return f"127.0.0.1:{ports[0]}"
    return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)


@dataclass
class Stack:
    database_url: str
    ports: Ports = field(default_factory=Ports)
    log_dir: Path = field(default_factory=lambda: data_dir() / "logs")
    extra_env: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # service -> how many replicas, or one Replica per process (default: one each).
    replicas: Mapping[str, int | Sequence[Replica]] = field(default_factory=dict)
    # replica name -> its process (the latest one, after restarts).
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # role -> key; the gateway only ever sees their hashes.
    api_keys: dict[str, str] = field(default_factory=generate_api_keys)
    # One for every gateway replica, so a dashboard session works on any of them.
    ui_session_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))

    def __post_init__(self) -> None:
        unknown = set(self.replicas) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}; services: {SERVICES}")
        self.processes: dict[str, Process] = {}
        for service in SERVICES:
            wanted = self.replicas.get(service, 1)
            specs = [Replica() for _ in range(wanted)] if isinstance(wanted, int) else wanted
            if not specs:
                raise ValueError(f"{service}: at least one replica")
            for index, spec in enumerate(specs):
                name = replica_name(service, index, len(specs))
                self.processes[name] = Process(
                    name,
                    service,
                    index,
                    spec,
                    self._port(self.ports.base_of(service), index),
                    self._port(self.ports.metrics_of(service), index),
                )
                if service == "api_gateway":
                    self.processes[name].http_port = self._port(self.ports.gateway_http, index)
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervised = False

    def _port(self, base: int, index: int) -> int:
        if index == 0:
            return base
        return free_port() if self.ports.free_for_replicas else base + index * self.ports.step

    # -- addresses -------------------------------------------------------------

    def replicas_of(self, service: str) -> list[Process]:
        return [p for p in self.processes.values() if p.service == service]

    def _select(self, name: str) -> list[Process]:
        """The replica of that name, or every replica of that service."""
        found = self.replicas_of(name)
        if not found and name in self.processes:
            found = [self.processes[name]]
        if not found:
            raise KeyError(f"no service or replica {name!r}; replicas: {list(self.processes)}")
        return found

    def target_of(self, service: str) -> str:
        """The gRPC target of every replica of a service."""
        return _target([p.grpc_port for p in self.replicas_of(service)])

    @property
    def api_key(self) -> str:
        """The stack's admin key (send as `Authorization: Bearer <key>`)."""
        return self.api_keys["admin"]

    @property
    def http_url(self) -> str:
        """The first gateway's HTTP address."""
        return f"http://127.0.0.1:{self.replicas_of('api_gateway')[0].http_port}"

    def metrics_url(self, name: str) -> str:
        """The Prometheus /metrics of a replica (a service: its first replica)."""
        return f"http://127.0.0.1:{self._select(name)[0].metrics_port}/metrics"

    @property
    def grpc_address(self) -> str:
        """The first gateway's public gRPC address."""
        return f"127.0.0.1:{self.replicas_of('api_gateway')[0].grpc_port}"

    def grpc_port_of(self, name: str) -> int:
        return self._select(name)[0].grpc_port

    def env_for(self, name: str) -> dict[str, str]:
        """The environment of a replica (a service name: its first replica)."""
        process = self._select(name)[0]
        service = process.service
        # The gateway's env secrets provider reads the secret `api-keys` from API_KEYS.
        auth = (
            {
                "API_KEYS": api_keys_secret(self.api_keys),
                "GATEWAY_UI_SESSION_SECRET": self.ui_session_secret,
            }
            if service == "api_gateway"
            else {}
        )
        gateway_http = process.http_port or self.replicas_of("api_gateway")[0].http_port
        ports = {
            "STATE_GRPC_PORT": self.grpc_port_of("state"),
            "ORCHESTRATOR_GRPC_PORT": self.grpc_port_of("orchestrator"),
            "WORKER_GRPC_PORT": self.grpc_port_of("worker"),
            "GATEWAY_GRPC_PORT": self.grpc_port_of("api_gateway"),
        }
        ports[_PORT_VARIABLE[service]] = process.grpc_port
        for other, variable in _METRICS_VARIABLE.items():
            ports[variable] = self._select(other)[0].metrics_port
        ports[_METRICS_VARIABLE[service]] = process.metrics_port
        env = {
            **os.environ,
            "BROKER_DATABASE_URL": self.database_url,
            **{key: str(value) for key, value in ports.items()},
            "GATEWAY_HTTP_PORT": str(gateway_http),
            "STATE_ADDRESS": self.target_of("state"),
            "ORCHESTRATOR_ADDRESS": self.target_of("orchestrator"),
            "WORKER_ADDRESS": self.target_of("worker"),
            **auth,
            **self.extra_env,
            **self.service_env.get(service, {}),
            **process.replica.env,
        }
        # Only the state service may open the jobs/tasks database.
        if service == "state":
            env["DATABASE_URL"] = self.database_url
        else:
            env.pop("DATABASE_URL", None)
        return env

    # -- lifecycle -------------------------------------------------------------

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "coremachine.services.state", "migrate"],
            env=self.env_for("state"),
            check=True,
        )

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """Starts a replica (or every replica of a service); returns the (last) process."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = None
        with self._lock:
            for process in self._select(name):
                log = open(self.log_dir / f"{process.name}.log", "ab")  # noqa: SIM115 (owned by the child)
                started = subprocess.Popen(
                    [sys.executable, "-m", f"coremachine.services.{process.service}"],
                    env=self.env_for(process.name),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                log.close()
                process.proc = started
                process.started_at = time.monotonic()
                process.restart_at = None
                self.procs[process.name] = started
        assert started is not None
        return started

    def wait_serving(self, name: str, timeout: float = 60.0) -> None:
        """Waits until the replica (every replica of a service) says SERVING."""
        deadline = time.monotonic() + timeout
        for process in self._select(name):
            self._wait_one(process, deadline, timeout)

    def _wait_one(self, process: Process, deadline: float, timeout: float) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{process.grpc_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                proc = process.proc
                if proc is not None and proc.poll() is not None and not self._supervised:
                    raise RuntimeError(
                        f"{process.name} exited with {proc.returncode};"
                        f" see {self.log_dir / (process.name + '.log')}"
                    )
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{process.name} did not become healthy within {timeout}s")
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

    def kill(self, name: str) -> None:
        """kill -9 a replica (or every replica of a service): no shutdown handler runs."""
        with self._lock:
            for process in self._select(name):
                if process.proc is not None and process.proc.poll() is None:
                    process.proc.send_signal(signal.SIGKILL)
                    process.proc.wait()

    def terminate(self, name: str, timeout: float = 30.0) -> None:
        """SIGTERM a replica (or every replica of a service) and wait until it
        exits: its shutdown handlers run, as on a rolling restart."""
        with self._lock:
            for process in self._select(name):
                if process.proc is not None and process.proc.poll() is None:
                    process.proc.terminate()
                    try:
                        process.proc.wait(timeout)
                    except subprocess.TimeoutExpired:
                        process.proc.kill()
                        process.proc.wait()

    def restart(self, name: str) -> None:
        self.start(name)
        self.wait_serving(name)

    def alive(self, name: str) -> bool:
        """Whether every process of that replica (or service) is running."""
        return all(p.proc is not None and p.proc.poll() is None for p in self._select(name))

    def stop(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGTERM the services front to back, each after the previous one exited.

        The gateways go first (no new work), the state replicas last, so that
        workers can still report what they finish during their grace period.
        The replicas of one service stop together. Supervision ends first.
        """
        self._stopping.set()
        codes: dict[str, int | None] = {}
        with self._lock:
            for service in reversed(SERVICES):
                running = [p for p in self.replicas_of(service) if p.proc is not None]
                for process in running:
                    assert process.proc is not None
                    if process.proc.poll() is None:
                        process.proc.send_signal(signal.SIGTERM)
                for process in running:
                    assert process.proc is not None
                    try:
                        codes[process.name] = process.proc.wait(timeout)
                    except subprocess.TimeoutExpired:
                        process.proc.kill()
                        codes[process.name] = process.proc.wait()
        return codes

    # -- supervision -----------------------------------------------------------

    def supervise(
        self,
        stopping: threading.Event,
        report: Callable[[str], None] | None = None,
        poll_seconds: float = 0.1,
    ) -> None:
        """Restarts every process that exits, with backoff, until `stopping` (or stop()).

        Each exit and restart is reported (default: a line on stderr). A
        process that exits 0 is restarted too: services only exit 0 when
        asked to stop, and nothing here asked.
        """
        say = report or (lambda line: print(line, file=sys.stderr, flush=True))
        self._supervised = True
        try:
            while not (stopping.is_set() or self._stopping.is_set()):
                self._supervise_once(say)
                stopping.wait(poll_seconds)
        finally:
            self._supervised = False

    def _supervise_once(self, say: Callable[[str], None]) -> None:
        now = time.monotonic()
        with self._lock:
            if self._stopping.is_set():
                return
            for process in self.processes.values():
                proc = process.proc
                if proc is None or proc.poll() is None:
                    continue
                if process.restart_at is None:
                    if now - process.started_at >= RESTART_RESET_AFTER:
                        process.backoff = RESTART_BACKOFF
                    process.restart_at = now + process.backoff
                    say(
                        f"{process.name} exited with code {proc.returncode};"
                        f" restarting in {process.backoff:.1f}s"
                        f" (log: {self.log_dir / (process.name + '.log')})"
                    )
                    process.backoff = min(process.backoff * 2, MAX_RESTART_BACKOFF)
                elif now >= process.restart_at:
                    process.restarts += 1
                    self.start(process.name)
                    say(f"{process.name} restarted (restart {process.restarts})")


_PORT_VARIABLE = {
    "state": "STATE_GRPC_PORT",
    "orchestrator": "ORCHESTRATOR_GRPC_PORT",
    "worker": "WORKER_GRPC_PORT",
    "api_gateway": "GATEWAY_GRPC_PORT",
}
_METRICS_VARIABLE = {
    "state": "STATE_METRICS_PORT",
    "orchestrator": "ORCHESTRATOR_METRICS_PORT",
    "worker": "WORKER_METRICS_PORT",
    "api_gateway": "GATEWAY_METRICS_PORT",
}
