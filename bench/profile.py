"""`python -m bench.profile`: where each service spends its CPU during a run.

Starts the stack (as `make bench` does), samples every service process with
py-spy (`record --format raw`, non-blocking) during one two-stage no-op job
of n tasks per stage, and prints per service the functions with the most
samples on CPU: by self time (the frame on top of the stack) and by inclusive
time among CoreMachine's own functions. With pg_stat_statements loadable in
the database (the embedded PostgreSQL has no such library), the statements
with the most execution time are printed too. The raw stacks stay in
.data/profiles/ for a flame graph (`flamegraph.pl`, speedscope).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg

from bench.cost import CostMeter
from bench.harness import ROOT, Bench, bench_stack, load_average

PY_SPY = Path(sys.executable).with_name("py-spy")

TOP_STATEMENTS = """
SELECT calls, round(total_exec_time::numeric, 1), round(mean_exec_time::numeric, 3), rows,
       regexp_replace(query, '\\s+', ' ', 'g')
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC
LIMIT %(limit)s
"""


def collapsed(path: Path) -> Counter[tuple[str, ...]]:
    """py-spy's raw output: one `frame;frame;...;frame count` line per distinct stack."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def self_time(stacks: Counter[tuple[str, ...]]) -> Counter[str]:
    """Samples per function on top of the stack (where the CPU actually was)."""
    top: Counter[str] = Counter()
    for stack, count in stacks.items():
        top[stack[-1]] += count
    return top


# py-spy names a frame "function (path)", the path shortened to its package
# part: CoreMachine's own frames are under these.
OWN_CODE = ("(services/", "(shared/", "(app/", "(builtin/")


def inclusive_time(
    stacks: Counter[tuple[str, ...]], markers: tuple[str, ...] = OWN_CODE
) -> Counter[str]:
    """Samples per function anywhere on the stack (once per stack), for frames with a marker."""
    found: Counter[str] = Counter()
    for stack, count in stacks.items():
        for frame in set(stack):
            if any(marker in frame for marker in markers):
                found[frame] += count
    return found


def shares(counter: Counter[str], total: int, limit: int) -> list[tuple[float, str]]:
    return [(round(100 * n / total, 1), name) for name, n in counter.most_common(limit)]


def statements(database_url: str, reset: bool, limit: int = 15) -> list | None:
    """Top statements by execution time; None when pg_stat_statements is not loaded."""
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            if reset:
                conn.execute("SELECT pg_stat_statements_reset()")
                return []
            return conn.execute(TOP_STATEMENTS, {"limit": limit}).fetchall()
    except psycopg.Error:
        return None


def py_spy_command(pid: int, rate: int, output: Path) -> list[str]:
    # Non-blocking: pausing a service at 100 Hz would slow the run it measures.
    return [
        str(PY_SPY),
        *("record", "--pid", str(pid), "--format", "raw", "--nonblocking", "--nolineno"),
        *("--rate", str(rate), "--output", str(output)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--n", type=int, default=10_000, help="tasks per stage")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--out", default=str(ROOT / ".data" / "profiles"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"n": args.n, "tasks": 2 * args.n}
    with bench_stack() as stack:
        bench = Bench(stack)
        meter = CostMeter(stack.database_url, {n: p.pid for n, p in stack.procs.items()})
        bench.throughput(100)  # warm-up
        statements(stack.database_url, reset=True)
        spies = {
            name: subprocess.Popen(
                py_spy_command(proc.pid, args.rate, out / f"{name}.txt"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for name, proc in stack.procs.items()
        }
        time.sleep(1.0)  # py-spy attaches
        mark = meter.start()
        report["run"] = bench.throughput(args.n)
        report["run"].update(meter.cpu_and_wal(mark, 2 * args.n))
        report["load_average"] = load_average()
        for spy in spies.values():
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy in spies.values():
            spy.wait(timeout=60)
        top = statements(stack.database_url, reset=False)
        bench.close()
    report["services"] = {}
    for name in spies:
        stacks = collapsed(out / f"{name}.txt")
        total = sum(stacks.values()) or 1
        report["services"][name] = {
            "samples": total,
            "self": shares(self_time(stacks), total, args.top),
            "coremachine_inclusive": shares(inclusive_time(stacks), total, args.top),
        }
    report["statements"] = (
        [
            {"calls": c, "total_ms": float(t), "mean_ms": float(m), "rows": r, "query": q[:160]}
            for c, t, m, r, q in top
        ]
        if top is not None
        else "pg_stat_statements is not loaded in this server"
    )
    text = json.dumps(report, indent=2)
    print(text)
    (out / "report.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
