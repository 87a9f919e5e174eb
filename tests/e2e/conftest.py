"""The four services as real processes on free ports, on a fresh database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from coremachine.stack.processes import Ports, Stack
from tests.databases import create_database, drop_database

TERMINAL = {"completed", "completed_with_errors", "failed", "cancelled"}


def make_stack(admin_url: str, tmp_path: Path, **kw) -> tuple[Stack, str]:
    url = create_database(admin_url, prefix="cm_e2e")
    stack = Stack(url, Ports.free(), log_dir=tmp_path / "logs", **kw)
    return stack, url


@contextmanager
def running_stack(admin_url: str, tmp_path: Path, **kw) -> Iterator[Stack]:
    """A started stack on a fresh database; stopped, dropped and its exit codes checked after."""
    stack, url = make_stack(admin_url, tmp_path, **kw)
    try:
        stack.up()
        yield stack
    finally:
        codes = stack.stop()
        drop_database(admin_url, url)
    # A clean SIGTERM shutdown is part of the contract.
    assert all(code == 0 for code in codes.values()), f"unclean exit codes: {codes}"


@pytest.fixture(scope="module")
def stack(admin_url: str, tmp_path_factory) -> Iterator[Stack]:
    with running_stack(
        admin_url,
        tmp_path_factory.mktemp("stack"),
        # The outbox table and its relay here; the other e2e stacks enqueue directly.
        extra_env={
            "LOG_LEVEL": "INFO",
            "TASK_RETRY_BASE_MS": "50",
            "TASK_RETRY_MAX_MS": "200",
            "OUTBOX_DIRECT_ENQUEUE": "false",
        },
    ) as stack:
        yield stack


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP client of the gateway holding the stack's admin key."""
    with httpx.Client(
        base_url=stack.http_url, timeout=30, headers=auth_headers(stack.api_key)
    ) as client:
        yield client


def auth_headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def grpc_metadata(stack: Stack, role: str = "admin") -> list[tuple[str, str]]:
    """Call metadata carrying the stack's key of that role, for JobService calls."""
    return [("authorization", f"Bearer {stack.api_keys[role]}")]


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict:
    """Polls the status route until the job is terminal (deadline, no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/jobs/status/{job_id}").raise_for_status().json()
        if job["status"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
        time.sleep(0.05)
