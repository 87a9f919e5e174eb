"""`make soak DURATION=...`: steady mixed load on a stack of its own; every
few seconds each service's RSS and open connections; at the end the RSS
slope per service and the jobs that did not finish.

Fails (exit 1) on any 5xx or failed connection, on a job still unfinished a
minute after the load stops, or on RSS that grows: the slope of a
least-squares line through each service's RSS after the warm-up (the first
quarter of the run, at least 15 s) may not exceed the bound. The bound is
`--max-growth-mb` (default 20 MB) spread over the measured window, or
`--max-slope-mb-per-min` (default 1 MB/min), whichever is larger: short runs
tolerate the allocator's steps, long runs must be flat (1 MB/min is 1.4 GB
a day).

    python -m bench.soak --duration 600 [--rate 40] [--clients 8] [--workers 2 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from bench.load import add_stack_arguments, replicas_of, report
from bench.local_stack import ROOT, local_stack
from bench.traffic import DEFAULT_WEIGHTS, Traffic
from coremachine.stack.processes import Stack

console = Console()
TERMINAL = {"completed", "completed_with_errors", "failed", "cancelled"}


@dataclass
class Sample:
    at: float
    rss_mb: dict[str, float]
    connections: dict[str, int]


@dataclass(eq=False)
class Sampler(threading.Thread):
    stack: Stack
    every: float
    samples: list[Sample] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        super().__init__(daemon=True)

    def run(self) -> None:
        started = time.monotonic()
        while not self.stopped.is_set():
            rss, connections = {}, {}
            for name, proc in self.stack.procs.items():
                try:
                    process = psutil.Process(proc.pid)
                    rss[name] = process.memory_info().rss / 2**20
                    connections[name] = len(process.net_connections(kind="all"))
                except psutil.Error:
                    continue
            self.samples.append(Sample(time.monotonic() - started, rss, connections))
            self.stopped.wait(self.every)


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60


def unfinished_jobs(stack: Stack, jobs: list[str], wait: float) -> list[str]:
    """Jobs not terminal `wait` seconds after the load stopped."""
    deadline = time.monotonic() + wait
    pending = list(dict.fromkeys(jobs))
    with httpx.Client(
        base_url=stack.http_url, timeout=30, headers={"Authorization": f"Bearer {stack.api_key}"}
    ) as client:
        while pending and time.monotonic() < deadline:
            status = client.get(f"/api/jobs/status/{pending[0]}").json()["status"]
            if status in TERMINAL:
                pending.pop(0)
            else:
                time.sleep(0.2)
    return pending


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sample-seconds", type=float, default=2.0)
    parser.add_argument("--max-growth-mb", type=float, default=20.0)
    parser.add_argument("--max-slope-mb-per-min", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(ROOT / ".data" / "soak.json"))
    add_stack_arguments(parser)
    args = parser.parse_args()
    if args.url:
        parser.error("the soak measures its own stack's processes: no --url")

    with local_stack("soak", replicas_of(args)) as stack:
        sampler = Sampler(stack, args.sample_seconds)
        sampler.start()
        traffic = Traffic(stack.http_url, stack.api_key, weights=DEFAULT_WEIGHTS, seed=args.seed)
        console.print(f"soak: {args.rate} req/s for {args.duration:.0f} s on {list(stack.procs)}")
        stats = asyncio.run(traffic.run(args.clients, args.duration, rate=args.rate))
        unfinished = unfinished_jobs(stack, traffic.jobs, wait=60)
        sampler.stopped.set()
        sampler.join()

    report(stats, f"soak: {stats.seconds:.0f} s at {args.rate} req/s")
    warmup = max(15.0, args.duration / 4)
    window = [s for s in sampler.samples if s.at >= warmup]
    minutes = (window[-1].at - window[0].at) / 60 if len(window) > 1 else 0.0
    bound = max(args.max_slope_mb_per_min, args.max_growth_mb / minutes if minutes else 0.0)
    table = Table(title=f"RSS and connections after {warmup:.0f} s of warm-up")
    for column in ("service", "RSS first MB", "RSS last MB", "slope MB/min", "connections"):
        table.add_column(column, justify="left" if column == "service" else "right")
    slopes: dict[str, float] = {}
    for name in stack.procs:
        points = [(s.at, s.rss_mb[name]) for s in window if name in s.rss_mb]
        slopes[name] = round(slope_per_minute(points), 2)
        conns = [s.connections[name] for s in sampler.samples if name in s.connections]
        table.add_row(
            name,
            f"{points[0][1]:.1f}" if points else "-",
            f"{points[-1][1]:.1f}" if points else "-",
            f"{slopes[name]:+.2f}",
            f"{min(conns, default=0)}..{max(conns, default=0)} (last {conns[-1] if conns else 0})",
        )
    console.print(table)
    console.print(f"RSS slope bound: {bound:.2f} MB/min over a {minutes:.1f} min window")
    result = {
        "load": stats.as_dict(),
        "rss_slope_mb_per_min": slopes,
        "rss_slope_bound_mb_per_min": round(bound, 2),
        "samples": [
            {"at": round(s.at, 1), "rss_mb": s.rss_mb, "connections": s.connections}
            for s in sampler.samples
        ],
        "unfinished_jobs": unfinished,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")

    failures = []
    if stats.server_errors():
        failures.append(f"server errors: {stats.server_errors()}")
    if unfinished:
        failures.append(f"{len(unfinished)} jobs unfinished, e.g. {unfinished[:3]}")
    growing = {name: slope for name, slope in slopes.items() if slope > bound}
    if growing:
        failures.append(f"RSS growing faster than {bound:.2f} MB/min: {growing}")
    for failure in failures:
        console.print(f"[red]{failure}[/red]")
    if not failures:
        console.print("[green]flat RSS, every job finished, no 5xx[/green]")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
