"""`coremachine-server up` (what `make up` runs) supervises: kill -9 any
process and it is restarted, with a line saying so; the stack stops only on
SIGTERM / Ctrl-C, and then exits 0 with every process gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from coremachine.stack.processes import free_port
from tests.databases import create_database, drop_database
from tests.e2e.faults import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.fault]


class Output:
    """Collects a process's output lines on a thread (so the pipe never fills)."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)


@pytest.fixture
def up(admin_url, tmp_path) -> Iterator[tuple[subprocess.Popen[str], Output, int]]:
    url = create_database(admin_url, prefix="cm_up")
    http_port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "COREMACHINE_DATA_DIR": str(tmp_path),
        "LOG_LEVEL": "WARNING",
    }
    ports = [
        ("--state-port", free_port()),
        ("--orchestrator-port", free_port()),
        ("--worker-port", free_port()),
        ("--grpc-port", free_port()),
        ("--http-port", http_port),
    ]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coremachine.server",
            "up",
            "--workers",
            "2",
            "--port-step",
            "7",
            *[str(part) for pair in ports for part in pair],
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    output = Output(proc.stdout)
    try:
        wait_until(lambda: output.has("stack up") or proc.poll() is not None, 120, "stack up")
        assert proc.poll() is None, "".join(output.lines)
        yield proc, output, http_port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for child in psutil.Process().children(recursive=True):
            if "coremachine.services" in " ".join(child.cmdline()):
                child.kill()
        drop_database(admin_url, url)


def services_of(proc: subprocess.Popen[str]) -> dict[int, str]:
    """pid -> service module of the stack's service processes."""
    found = {}
    for child in psutil.Process(proc.pid).children():
        try:
            module = next(a for a in child.cmdline() if a.startswith("coremachine.services."))
        except (StopIteration, psutil.Error):
            continue
        found[child.pid] = module.rsplit(".", 1)[1]
    return found


def test_up_restarts_a_killed_process_and_stops_only_when_told(up):
    proc, output, http_port = up
    before = services_of(proc)
    assert sorted(before.values()) == ["api_gateway", "orchestrator", "state", "worker", "worker"]
    victim = next(pid for pid, service in before.items() if service == "worker")
    os.kill(victim, signal.SIGKILL)

    wait_until(lambda: output.has("restarted"), 60, "the restart to be reported")
    exited = next(line for line in output.lines if "exited with code -9" in line)
    assert exited.split()[0] in ("worker-1", "worker-2"), exited
    wait_until(lambda: len(services_of(proc)) == 5, 60, "a new worker process")
    after = services_of(proc)
    assert victim not in after and sorted(after.values()) == sorted(before.values())
    # The stack is whole again.
    assert proc.poll() is None
    wait_until(
        lambda: (
            httpx.get(f"http://127.0.0.1:{http_port}/api/health", timeout=10).status_code == 200
        ),
        60,
        "healthy again",
    )

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, "".join(output.lines)
    gone = time.monotonic() + 30
    while any(psutil.pid_exists(pid) for pid in after) and time.monotonic() < gone:
        time.sleep(0.1)
    assert not [pid for pid in after if psutil.pid_exists(pid)]


def test_up_prints_the_dashboard_address_and_its_key_signs_in(up):
    """A new user: `make up`, open the printed address, sign in with the printed key."""
    proc, output, http_port = up
    address = f"http://127.0.0.1:{http_port}/ui"
    wait_until(lambda: output.has("admin API key"), 60, "the key to be printed")
    line = next(line for line in output.lines if "dashboard:" in line)
    assert address in line, line
    at = next(i for i, line in enumerate(output.lines) if "admin API key" in line)
    wait_until(lambda: len(output.lines) > at + 1, 30, "the key line")
    key = output.lines[at + 1].strip()
    with httpx.Client(timeout=30) as browser:
        r = browser.get(address, follow_redirects=True)
        assert r.status_code == 200 and "Sign in" in r.text
        token = r.text.split('name="csrf_token" value="')[1].split('"')[0]
        r = browser.post(
            f"{address}/login", data={"csrf_token": token, "api_key": key}, follow_redirects=True
        )
        assert r.status_code == 200 and "<h1>Jobs</h1>" in r.text, r.text[:500]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, "".join(output.lines)
