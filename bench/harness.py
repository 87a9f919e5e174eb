"""What every benchmark mode shares: the stack on a database of its own, the
SDK driver, the RSS sampler and the machine's description."""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psutil
import psycopg

from bench.local_stack import ROOT, local_stack
from coremachine.stack.processes import Stack
from coremachine_sdk import Client, JobStatus

__all__ = ["ROOT", "Bench", "RssSampler", "bench_stack", "load_average", "machine"]


@contextmanager
def bench_stack(extra_env: Mapping[str, str] | None = None) -> Iterator[Stack]:
    """The four services on a fresh database of DATABASE_URL's server (else the
    embedded PostgreSQL), as the load and soak tools run them; the noop job
    allowed a million tasks."""
    with local_stack(
        "bench", extra_env={"HELLO_WORLD_MAX_N": "1000000", **(extra_env or {})}
    ) as stack:
        yield stack


class RssSampler(threading.Thread):
    """Samples each service's resident memory; keeps the peak."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.peak: dict[str, float] = {}
        self.stopped = threading.Event()

    def reset(self) -> None:
        """Forget the peaks so far: the next figures are one run's."""
        self.peak = {}

    def run(self) -> None:
        while not self.stopped.is_set():
            for name, proc in self.stack.procs.items():
                try:
                    rss = psutil.Process(proc.pid).memory_info().rss / 2**20
                except psutil.Error:
                    continue
                self.peak[name] = max(self.peak.get(name, 0.0), rss)
            self.stopped.wait(0.1)


def machine() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load when the figures were taken (a shared machine is noisy)."""
    return [round(x, 2) for x in os.getloadavg()]


class Bench:
    """Drives jobs through the public SDK, as a user would."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.client = Client(stack.grpc_address, api_key=getattr(stack, "api_key", None))

    def xacts(self) -> int:
        with psycopg.connect(self.stack.database_url) as conn:
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database"
                " WHERE datname = current_database()"
            ).fetchone()
        return int(row[0]) if row else 0

    def throughput(self, n: int, timeout: float = 3600) -> dict[str, Any]:
        start = time.perf_counter()
        job = self.client.submit("noop", n=n, run=uuid.uuid4().hex)
        job = self.client.wait(job.job_id, timeout=timeout)
        seconds = time.perf_counter() - start
        if job.status != JobStatus.COMPLETED:
            raise RuntimeError(f"benchmark job ended {job.status}: {job.error}")
        return {
            "n": n,
            "tasks": 2 * n,
            "seconds": round(seconds, 3),
            "tasks_per_s": round(2 * n / seconds, 1),
            "load_average": load_average(),
        }

    def latency(self, jobs: int) -> dict[str, Any]:
        samples = []
        for _ in range(jobs):
            start = time.perf_counter()
            job = self.client.submit("noop", n=1, run=uuid.uuid4().hex)
            self.client.wait(job.job_id, timeout=60)
            samples.append((time.perf_counter() - start) * 1000)
        samples.sort()
        return {
            "jobs": jobs,
            "p50": round(statistics.median(samples), 1),
            "p99": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1),
            "load_average": load_average(),
        }

    def close(self) -> None:
        self.client.close()
