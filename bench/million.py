"""`python -m bench --million`: one job with a stage of 1,000,000 tasks.

The same two-stage no-op job as the throughput runs, scaled: n=1,000,000
tasks, then 1,000,000 more (2,000,000 tasks in all). Reported against the
n=1,000 rate measured on the same stack just before it (the issue's target is
at least 0.8x), with its cost per 1,000 tasks, the peak RSS of each service
during the large job (target: under 250 MB each), how much the database grew,
and n=1 latency right after it. Writes bench/latest-million.json; not in CI
(it takes minutes).
"""

from __future__ import annotations

import psycopg

from bench.cost import CostMeter, rows_report, settle_table_stats
from bench.harness import Bench, RssSampler, load_average, machine
from coremachine.stack.processes import Stack

DATABASE_SIZE = "SELECT pg_database_size(current_database())"


def database_mb(database_url: str) -> float:
    """The database's size on disk (tables, indexes, TOAST, free space not yet reused)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(DATABASE_SIZE).fetchone()
    return round(int(row[0]) / 2**20, 1) if row else 0.0


def measure_million(stack: Stack, n: int, latency_jobs: int, settle: float) -> dict:
    """The n=1,000 baseline, then the n-task stage job, then n=1 latency right after."""
    sampler = RssSampler(stack)
    sampler.start()
    bench = Bench(stack)
    try:
        meter = CostMeter(stack.database_url, {name: p.pid for name, p in stack.procs.items()})
        bench.throughput(100)  # warm-up
        idle_latency = bench.latency(latency_jobs)
        baseline = bench.throughput(1000)
        settle_table_stats(settle)
        size_before = database_mb(stack.database_url)
        sampler.reset()  # the peaks of the large job alone
        mark = meter.start()
        # Hours on a loaded machine: the wait must not give up first.
        large = bench.throughput(n, timeout=6 * 3600)
        large.update(meter.cpu_and_wal(mark, 2 * n))
        peak_rss = {k: round(v, 1) for k, v in sorted(sampler.peak.items())}
        size_after = database_mb(stack.database_url)
        latency_after = bench.latency(latency_jobs)
        settle_table_stats(settle)
        # The latency jobs' rows are a rounding error next to 2,000,000 tasks'.
        large.update(rows_report(meter.rows_since(mark), 2 * n))
    finally:
        bench.close()
        sampler.stopped.set()
    return {
        "machine": machine(),
        "load_average": load_average(),
        "baseline_n_1000": baseline,
        "million": large,
        "ratio_to_n_1000": round(large["tasks_per_s"] / baseline["tasks_per_s"], 2),
        "peak_rss_mb_during_million": peak_rss,
        "database_mb": {
            "before": size_before,
            "after": size_after,
            "growth": round(size_after - size_before, 1),
        },
        "latency_ms": idle_latency,
        "latency_after_million_ms": latency_after,
    }
