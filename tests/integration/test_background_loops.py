"""A process never exits 0 unless asked to stop: a failed background loop
restarts with backoff, or the process exits non-zero (real processes)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coremachine.shared.background import EXIT_LOOP_FAILED, Background, supervise
from coremachine.shared.grpc_server import LIVENESS, GrpcServer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def start(mode: str, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.loop_service", mode, str(port_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return proc, port_file


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 30) -> list[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if text in line:
            return lines
        assert time.monotonic() < deadline, f"no {text!r} in {lines}"
    raise AssertionError(f"exited without {text!r}: {lines}")


def health(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


@pytest.mark.parametrize("mode", ["restart", "returns"])
def test_a_failed_loop_restarts_and_the_process_stops_cleanly_only_when_asked(mode, tmp_path):
    proc, port_file = start(mode, tmp_path)
    try:
        lines = wait_for_line(proc, "run 3 is up")
        assert sum("restarting in" in line for line in lines) == 2, lines
        assert proc.poll() is None
        assert health(int(port_file.read_text())) == SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("mode", ["fatal", "always"])
def test_a_loop_that_cannot_go_on_makes_the_process_exit_non_zero(mode, tmp_path):
    proc, _ = start(mode, tmp_path)
    try:
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.stdout is not None
    output = proc.stdout.read()
    assert code == EXIT_LOOP_FAILED, output
    assert "stopping the service" in output


async def test_health_is_not_serving_while_a_loop_waits_to_restart():
    server = GrpcServer(0, host="127.0.0.1")
    await server.start()
    stopping = asyncio.Event()

    async def broken(stopping: asyncio.Event) -> None:
        raise RuntimeError("down")

    # A long backoff: the loop stays down while we look.
    supervisor = asyncio.create_task(
        supervise(Background(broken, name="broken", initial_backoff=60), stopping, server.report)
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while (await stub.Check(health_pb2.HealthCheckRequest())).status != NOT_SERVING:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert "broken" in server.problems
        # Liveness stays SERVING: nothing to gain from restarting the process.
        live = await stub.Check(health_pb2.HealthCheckRequest(service=LIVENESS))
        assert live.status == SERVING
        stopping.set()
        await asyncio.wait_for(supervisor, 10)
    finally:
        await channel.close()
        await server.stop(0)
