"""Every service rides out PostgreSQL restarting under it (fast, twice) and
crashing (immediate stop, then start) in the middle of a job: no process
exits, the job completes with every task counted once, submits during the
outage are 503 with Retry-After / UNAVAILABLE (never 502 / INTERNAL), and
health goes NOT_SERVING, then SERVING again.

PostgreSQL here is a private server (tests/private_pg.py), never the
shared one.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coremachine.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from coremachine.stack.processes import Ports, Stack
from tests.databases import create_database
from tests.e2e.conftest import TERMINAL, auth_headers, grpc_metadata, wait_for_job
from tests.e2e.faults import FAST_RECOVERY_ENV, assert_counted_once, scalar, wait_until
from tests.private_pg import PrivatePostgres

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

N = 400
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    yield server
    server.close()


@pytest.fixture
def stack(pg: PrivatePostgres, tmp_path) -> Iterator[Stack]:
    url = create_database(pg.url, prefix="cm_restart")
    stack = Stack(
        url,
        Ports.free(),
        log_dir=tmp_path / "logs",
        extra_env={
            **FAST_RECOVERY_ENV,
            "HEALTH_PROBE_SECONDS": "0.5",
            # Few tasks at a time: the job lasts through all three faults.
            "WORKER_CONCURRENCY": "8",
        },
    )
    stack.up()
    yield stack
    stack.stop()


@dataclass
class Observer:
    """Submits small jobs over HTTP and gRPC and watches every service's
    health, throughout the test, recording what it sees."""

    stack: Stack
    http_codes: Counter[int] = field(default_factory=Counter)
    grpc_codes: Counter[str] = field(default_factory=Counter)
    missing_retry_after: int = 0
    accepted: list[str] = field(default_factory=list)
    health: dict[str, list[int]] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.threads = [
            threading.Thread(target=self._submit_http, daemon=True),
            threading.Thread(target=self._submit_grpc, daemon=True),
            threading.Thread(target=self._watch_health, daemon=True),
        ]

    def __enter__(self) -> Observer:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _submit_http(self) -> None:
        with httpx.Client(
            base_url=self.stack.http_url, timeout=60, headers=auth_headers(self.stack.api_key)
        ) as client:
            while not self.stopping.is_set():
                r = client.post(
                    "/api/jobs/submit/hello_world", json={"n": 1, "message": uuid.uuid4().hex}
                )
                self.http_codes[r.status_code] += 1
                if r.status_code == 503 and "retry-after" not in r.headers:
                    self.missing_retry_after += 1
                if r.status_code == 202:
                    self.accepted.append(r.json()["job"]["job_id"])
                self.stopping.wait(0.05)  # pacing of the load, not a wait for work

    def _submit_grpc(self) -> None:
        with grpc.insecure_channel(self.stack.grpc_address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            while not self.stopping.is_set():
                params = struct_pb2.Struct()
                params.update({"n": 1, "message": uuid.uuid4().hex})
                try:
                    stub.SubmitJob(
                        jobs_pb2.SubmitJobRequest(job_type="hello_world", parameters=params),
                        metadata=grpc_metadata(self.stack),
                        timeout=60,
                    )
                    self.grpc_codes["OK"] += 1
                except grpc.RpcError as exc:
                    self.grpc_codes[exc.code().name] += 1
                self.stopping.wait(0.05)

    def _watch_health(self) -> None:
        channels = {
            name: grpc.insecure_channel(f"127.0.0.1:{p.grpc_port}")
            for name, p in self.stack.processes.items()
        }
        try:
            while not self.stopping.is_set():
                for name, channel in channels.items():
                    try:
                        status = (
                            health_pb2_grpc.HealthStub(channel)
                            .Check(health_pb2.HealthCheckRequest(), timeout=2)
                            .status
                        )
                    except grpc.RpcError:
                        continue  # slow to answer on a busy machine: the pids say if it is gone
                    seen = self.health.setdefault(name, [])
                    if not seen or seen[-1] != status:
                        seen.append(status)
                self.stopping.wait(0.05)
        finally:
            for channel in channels.values():
                channel.close()


def health_of(stack: Stack, name: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{stack.grpc_port_of(name)}") as channel:
        return (
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(), timeout=2)
            .status
        )


def all_health(stack: Stack, wanted: int) -> bool:
    return all(health_of(stack, name) == wanted for name in stack.processes)


def completed(stack: Stack, job_id: str) -> int:
    return scalar(
        stack.database_url,
        "SELECT count(*) FROM coremachine.tasks WHERE job_id = %s AND status = 'completed'",
        job_id,
    )


def test_services_ride_out_postgresql_restarts_and_a_crash(pg, stack, capsys):
    pids = {name: proc.pid for name, proc in stack.procs.items()}
    client = httpx.Client(base_url=stack.http_url, timeout=60, headers=auth_headers(stack.api_key))
    r = client.post(
        "/api/jobs/submit/hello_world", json={"n": N, "task_delay_ms": 50, "message": "restarts"}
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["job_id"]
    figures: dict[str, float] = {}
    with Observer(stack) as observer:
        for fault, after in (("fast restart 1", 40), ("fast restart 2", 200)):
            wait_until(lambda n=after: completed(stack, job_id) >= n, 120, f"{after} tasks done")
            pg.restart("fast")
            back = time.monotonic()
            wait_until(lambda: all_health(stack, SERVING), 60, "SERVING after the restart")
            figures[f"{fault}: all SERVING after (s)"] = round(time.monotonic() - back, 2)

        wait_until(lambda: completed(stack, job_id) >= N + 50, 120, "stage 2 under way")
        pg.stop("immediate")  # a crash: no shutdown checkpoint, recovery at start
        down = time.monotonic()
        wait_until(lambda: all_health(stack, NOT_SERVING), 60, "every service NOT_SERVING")
        figures["crash: all NOT_SERVING after (s)"] = round(time.monotonic() - down, 2)
        # A submit while the database is down: refused now, retry later.
        r = client.post("/api/jobs/submit/hello_world", json={"n": 1, "message": "during"})
        assert r.status_code == 503, r.text
        assert int(r.headers["retry-after"]) > 0
        assert r.json()["error"] in ("Unavailable", "Overloaded"), r.text
        with (
            grpc.insecure_channel(stack.grpc_address) as channel,
            pytest.raises(grpc.RpcError) as e,
        ):
            params = struct_pb2.Struct()
            params.update({"n": 1, "message": "during, over gRPC"})
            jobs_pb2_grpc.JobServiceStub(channel).SubmitJob(
                jobs_pb2.SubmitJobRequest(job_type="hello_world", parameters=params),
                metadata=grpc_metadata(stack),
                timeout=60,
            )
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
        assert client.get("/api/health").status_code == 503

        pg.start()
        back = time.monotonic()
        wait_until(lambda: all_health(stack, SERVING), 60, "SERVING after the crash")
        figures["crash: all SERVING after start (s)"] = round(time.monotonic() - back, 2)
        accepted_before = len(observer.accepted)
        wait_until(lambda: len(observer.accepted) > accepted_before, 60, "a submit accepted")
        figures["crash: first submit accepted after start (s)"] = round(time.monotonic() - back, 2)

        job = wait_for_job(client, job_id, timeout=180)
    assert job["status"] == "completed", job
    assert_counted_once(stack.database_url, job_id, N)
    # Every job the gateway accepted, during the faults too, finishes.
    for small in observer.accepted:
        assert wait_for_job(client, small, timeout=120)["status"] in TERMINAL - {"failed"}

    assert set(observer.http_codes) <= {200, 202, 503}, observer.http_codes
    assert observer.missing_retry_after == 0
    assert set(observer.grpc_codes) <= {"OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}, (
        observer.grpc_codes
    )
    # Health went down and came back, and no process ever went away.
    for name, seen in observer.health.items():
        assert NOT_SERVING in seen and seen[-1] == SERVING, (name, seen)
    assert {name: p.pid for name, p in stack.procs.items()} == pids
    assert all(proc.poll() is None for proc in stack.procs.values())
    with capsys.disabled():
        print(f"\nPostgreSQL restart figures: {figures}")
        print(f"submits over HTTP {dict(observer.http_codes)}, gRPC {dict(observer.grpc_codes)}")
    codes = stack.stop()
    assert all(code == 0 for code in codes.values()), codes
