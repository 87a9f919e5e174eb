"""`make bench`: throughput, latency and cost of CoreMachine on this machine.

Starts the stack (four service processes, PostgreSQL queue) on the embedded
PostgreSQL (or DATABASE_URL), then measures:
- latency: sequential n=1 jobs, submit to completed, p50 and p99, on the
  warmed-up stack; measured again after the throughput runs, while
  PostgreSQL still digests them (autovacuum), and reported separately;
- throughput: a two-stage no-op job (n tasks, then n more) from submit to
  completed, for each n, as tasks per second;
- cost (bench/cost.py), around each run: CPU seconds per 1,000 tasks of each
  service and of the PostgreSQL server, rows written per task (per app table)
  and WAL bytes per task; the same per n=1 job for the latency run; PostgreSQL
  transactions per task (pg_stat_database), peak RSS per service;
- tracing: the n=10,000 job on two fresh stacks, tracing off and on
  (bench/tracing_cost.py), and what it costs.
Prints a table and writes bench/latest.json. Never a timed assertion.

A stage of 1,000,000 tasks (bench/million.py), on its own: `--million`; it
writes bench/latest-million.json.

Flow control (bench/flow.py), on their own: `--priority` (a priority 9 job
behind a 100,000-task job) and `--limits` (what a limit check costs per
claim); they write bench/latest-flow.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.cost import (
    STATS_FLUSH_SECONDS,
    CostMeter,
    per_job_cost,
    rows_report,
    settle_table_stats,
)
from bench.harness import ROOT, Bench, RssSampler, bench_stack, load_average, machine
from bench.tracing_cost import tracing_cost
from coremachine.shared.pg_urls import start_embedded
from coremachine.stack.processes import Stack

console = Console()


def report(results: dict) -> None:
    table = Table(title=f"CoreMachine benchmark (load average {results['load_average']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for t in results["throughput"]:
        table.add_row(
            f"throughput n={t['n']:,} ({t['tasks']:,} tasks)",
            f"{t['tasks_per_s']:,} tasks/s in {t['seconds']} s",
        )
        table.add_row("  CPU s per 1,000 tasks", cpu_text(t["cpu_s_per_1000_tasks"]))
        table.add_row(
            "  rows written per task, WAL per task",
            f"{t['rows_written_per_task']} rows, {t['wal_bytes_per_task']:,} bytes",
        )
    lat = results["latency_ms"]
    table.add_row(f"latency n=1 ({lat['jobs']} jobs)", f"p50 {lat['p50']} ms, p99 {lat['p99']} ms")
    table.add_row("  CPU ms per n=1 job", cpu_text(lat["cpu_ms_per_job"]))
    table.add_row(
        "  rows written per job, WAL per job",
        f"{lat['rows_written_per_job']} rows, {lat['wal_bytes_per_job']:,} bytes",
    )
    after = results["latency_after_throughput_ms"]
    table.add_row(
        f"latency n=1 right after the throughput runs ({after['jobs']} jobs)",
        f"p50 {after['p50']} ms, p99 {after['p99']} ms",
    )
    table.add_row("PostgreSQL transactions per task", str(results["pg_xacts_per_task"]))
    if "tracing" in results:
        tr = results["tracing"]
        table.add_row(
            f"tracing off / on, n={tr['n']:,}",
            f"{tr['tracing_off_tasks_per_s']:,} / {tr['tracing_on_tasks_per_s']:,} tasks/s"
            f" ({tr['cost_pct']} %)",
        )
    for name, mb in results["peak_rss_mb"].items():
        table.add_row(f"peak RSS {name}", f"{mb} MB")
    console.print(table)


def cpu_text(cpu: dict[str, float]) -> str:
    """ "state 0.12, worker 0.08, ..., postgres 0.2 (total 0.6)": the table's cost cell."""
    parts = [f"{name} {seconds:g}" for name, seconds in cpu.items()]
    return ", ".join(parts) + f" (total {round(sum(cpu.values()), 3):g})"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--sizes", default="1000,10000,100000", help="n per throughput run")
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help="small sizes, for CI")
    parser.add_argument("--output", default=str(ROOT / "bench" / "latest.json"))
    parser.add_argument(
        "--tracing-n", type=int, default=10_000, help="n of the tracing off/on runs (0: none)"
    )
    parser.add_argument(
        "--priority", action="store_true", help="a priority 9 job behind a large one (only)"
    )
    parser.add_argument("--priority-n", type=int, default=100_000, help="tasks of the large job")
    parser.add_argument(
        "--limits", action="store_true", help="the cost of a limit check per claim (only)"
    )
    parser.add_argument("--limits-tasks", type=int, default=20_000, help="tasks per variant")
    parser.add_argument("--limits-rounds", type=int, default=3)
    parser.add_argument(
        "--stats-settle",
        type=float,
        default=STATS_FLUSH_SECONDS,
        help="seconds to wait for PostgreSQL's table counters after each run (bench/cost.py)",
    )
    parser.add_argument(
        "--million", action="store_true", help="one job with a 1,000,000-task stage (only)"
    )
    parser.add_argument("--million-n", type=int, default=1_000_000, help="tasks of its stages")
    parser.add_argument("--million-output", default=str(ROOT / "bench" / "latest-million.json"))
    parser.add_argument("--flow-output", default=str(ROOT / "bench" / "latest-flow.json"))
    args = parser.parse_args()
    if args.priority or args.limits:
        return flow_main(args)
    if args.million:
        return million_main(args)
    sizes = [100, 1000] if args.smoke else [int(s) for s in args.sizes.split(",")]
    latency_jobs = 20 if args.smoke else args.latency_jobs
    with bench_stack() as stack:
        results = measure(stack, sizes, latency_jobs, args.stats_settle)
    results["smoke"] = args.smoke
    if args.tracing_n and not args.smoke:
        results["tracing"] = tracing_cost(
            lambda env: throughput_on_fresh_stack(args.tracing_n, env), args.tracing_n
        )
    report(results)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    if not args.smoke:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    else:
        print(json.dumps(results))
    return 0


def throughput_on_fresh_stack(n: int, env: Mapping[str, str]) -> dict[str, Any]:
    """One warmed-up throughput run at n on a stack of its own, with `env` added."""
    with bench_stack(env) as stack:
        bench = Bench(stack)
        bench.throughput(100)  # warm-up
        result = bench.throughput(n)
        bench.close()
        return result


def measure(stack: Stack, sizes: list[int], latency_jobs: int, settle: float) -> dict:
    """Latency, then each throughput run, each with its cost; latency again after the last."""
    sampler = RssSampler(stack)
    sampler.start()
    bench = Bench(stack)
    try:
        meter = CostMeter(stack.database_url, {name: p.pid for name, p in stack.procs.items()})
        bench.throughput(100)  # warm-up: connections, JIT-free code paths, caches
        bench.latency(20)
        latency, latency_rows = measured_latency(bench, meter, latency_jobs, settle)
        throughput = []
        tasks = 0
        xacts_before = bench.xacts()
        latency_after: dict = {}
        for i, n in enumerate(sizes):
            mark = meter.start()
            result = bench.throughput(n)
            result.update(meter.cpu_and_wal(mark, 2 * n))
            console.print(f"n={n:,}: {result['tasks_per_s']:,} tasks/s ({result['seconds']} s)")
            throughput.append(result)
            tasks += 2 * n
            minus = None
            if i == len(sizes) - 1:
                # Latency right after the largest run, before the stats settle
                # (which would give PostgreSQL time to digest it); the rows of
                # these n=1 jobs, measured above, are then taken off the run's.
                xacts_per_task = (bench.xacts() - xacts_before) / tasks
                latency_after = bench.latency(latency_jobs)
                minus = latency_rows
            settle_table_stats(settle)
            result.update(rows_report(meter.rows_since(mark), 2 * n, minus))
    finally:
        bench.close()
        sampler.stopped.set()
    return {
        "machine": machine(),
        "load_average": load_average(),
        "throughput": throughput,
        "latency_ms": latency,
        "latency_after_throughput_ms": latency_after,
        "pg_xacts_per_task": round(xacts_per_task, 2),
        "peak_rss_mb": {k: round(v, 1) for k, v in sorted(sampler.peak.items())},
    }


def measured_latency(
    bench: Bench, meter: CostMeter, jobs: int, settle: float
) -> tuple[dict, dict[str, int]]:
    """n=1 latency with its cost per job; also the rows these jobs wrote, per table."""
    settle_table_stats(settle)  # the warm-up's rows are not the latency run's
    mark = meter.start()
    latency = bench.latency(jobs)
    latency.update(per_job_cost(meter.cpu_and_wal(mark, jobs)))
    settle_table_stats(settle)
    rows = meter.rows_since(mark)
    latency["rows_written_per_job"] = round(sum(rows.values()) / jobs, 1)
    return latency, rows


def million_main(args: argparse.Namespace) -> int:
    """`--million` (bench/million.py)."""
    from bench.million import measure_million

    with bench_stack() as stack:
        results = measure_million(stack, args.million_n, args.latency_jobs, args.stats_settle)
    console.print_json(json.dumps(results))
    Path(args.million_output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def flow_main(args: argparse.Namespace) -> int:
    """`--priority` and/or `--limits` (bench/flow.py)."""
    from bench import flow

    results: dict[str, object] = {"machine": machine()}
    if args.limits:
        url = os.environ.get("DATABASE_URL") or start_embedded(ROOT / ".data" / "bench-pg")
        results["limit_check_per_claim"] = flow.claim_cost_in(
            url, args.limits_tasks, args.limits_rounds
        )
        console.print(results["limit_check_per_claim"])
    if args.priority:
        with bench_stack() as stack:
            bench = Bench(stack)
            bench.throughput(100)  # warm-up
            results["priority"] = flow.priority_behind_backlog(bench.client, args.priority_n)
            console.print(results["priority"])
            bench.close()
    Path(args.flow_output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
