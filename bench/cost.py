"""What a benchmark run costs: CPU seconds per process, rows and WAL written.

Measured around a run as the difference of two snapshots, so that a change's
cost is visible per 1,000 tasks and not only as a rate:
- CPU: user + system seconds of each service process and of the PostgreSQL
  server (the postmaster, its live children, and through the postmaster's
  `children_*` times the backends that exited and were reaped in between);
- rows: inserts + updates + deletes of the app's tables (schemas
  `coremachine` and `broker`) from pg_stat_user_tables, per database;
- WAL: bytes between two `pg_current_wal_lsn()`, server-wide (on a shared
  server other databases' writes count too; the embedded default is ours).

pg_stat_user_tables lags: a backend flushes its counters at most once a
second, and one that goes idle right after a flush waits up to
PGSTAT_IDLE_INTERVAL (10 s) before the next one, so a snapshot taken right
after a run misses its last second. `settle_table_stats` waits that out.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import psutil
import psycopg

# PostgreSQL's PGSTAT_IDLE_INTERVAL (10 s) plus a margin: after this long
# every backend has flushed what it counted before the wait began.
STATS_FLUSH_SECONDS = 11.0

APP_SCHEMAS = ("coremachine", "broker")

# A table's TOAST rows count too (reported as "<table> (toast)"): a large value,
# such as a run of events (migration 0012), is written there.
ROWS_WRITTEN_BY_TABLE = """
SELECT schemaname || '.' || relname, n_tup_ins + n_tup_upd + n_tup_del
FROM pg_stat_user_tables
WHERE schemaname = ANY(%(schemas)s)
UNION ALL
SELECT n.nspname || '.' || c.relname || ' (toast)', t.n_tup_ins + t.n_tup_upd + t.n_tup_del
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_stat_all_tables t ON t.relid = c.reltoastrelid
WHERE n.nspname = ANY(%(schemas)s) AND c.relkind = 'r'
"""
WAL_POSITION = "SELECT pg_current_wal_lsn()::text"
WAL_BYTES_BETWEEN = "SELECT pg_wal_lsn_diff(%(after)s::pg_lsn, %(before)s::pg_lsn)::bigint"
BACKEND_PID = "SELECT pg_backend_pid()"


def process_cpu_seconds(process: psutil.Process, *, reaped_children: bool = False) -> float:
    """User + system CPU seconds of a process; with reaped_children, also of its
    children that have exited and been waited for (how a postmaster's backends end)."""
    times = process.cpu_times()
    seconds = times.user + times.system
    if reaped_children:
        seconds += times.children_user + times.children_system
    return seconds


def postgres_server(database_url: str) -> psutil.Process | None:
    """The postmaster of the server behind the URL, if it runs on this machine."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(BACKEND_PID).fetchone()
        # While connected: the backend exits with the connection.
        try:
            return psutil.Process(int(row[0])).parent() if row else None
        except psutil.Error:
            return None  # a remote server: its CPU is not ours to see


def postgres_cpu_seconds(postmaster: psutil.Process) -> float:
    """CPU seconds of the whole server: postmaster, live children, reaped children."""
    total = process_cpu_seconds(postmaster, reaped_children=True)
    for child in postmaster.children(recursive=True):
        try:
            total += process_cpu_seconds(child)
        except psutil.Error:
            continue  # exited between the listing and the read: counted once reaped
    return total


def rows_written(database_url: str) -> dict[str, int]:
    """Rows inserted + updated + deleted so far, per app table."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(ROWS_WRITTEN_BY_TABLE, {"schemas": list(APP_SCHEMAS)}).fetchall()
    return {str(name): int(count) for name, count in rows}


def wal_position(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(WAL_POSITION).fetchone()
    return str(row[0]) if row else "0/0"


def wal_bytes_between(database_url: str, before: str, after: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(WAL_BYTES_BETWEEN, {"before": before, "after": after}).fetchone()
    return int(row[0]) if row else 0


def settle_table_stats(seconds: float = STATS_FLUSH_SECONDS) -> None:
    """Waits until every backend has flushed its table counters (see module doc)."""
    time.sleep(seconds)


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds so far of each named process (services, and "postgres")."""

    seconds: Mapping[str, float]

    def per_1000_tasks(self, later: CpuSnapshot, tasks: int) -> dict[str, float]:
        """CPU seconds each process spent per 1,000 tasks between this and later."""
        return {
            name: round((later.seconds[name] - self.seconds[name]) * 1000 / tasks, 3)
            for name in sorted(later.seconds)
            if name in self.seconds
        }


class CostMeter:
    """Snapshots of CPU, rows and WAL for one stack; diff two with `cost`."""

    def __init__(self, database_url: str, services: Mapping[str, int]) -> None:
        self.database_url = database_url
        self.services = {name: psutil.Process(pid) for name, pid in services.items()}
        self.postmaster = postgres_server(database_url)

    def cpu(self) -> CpuSnapshot:
        seconds = {}
        for name, process in self.services.items():
            try:
                seconds[name] = process_cpu_seconds(process)
            except psutil.Error:
                continue  # a service that died: the run fails on its own
        if self.postmaster is not None:
            seconds["postgres"] = postgres_cpu_seconds(self.postmaster)
        return CpuSnapshot(seconds)

    def start(self) -> RunStart:
        """Call right before a run (after the previous run's stats settled)."""
        return RunStart(
            cpu=self.cpu(),
            rows=rows_written(self.database_url),
            wal=wal_position(self.database_url),
        )

    def cpu_and_wal(self, start: RunStart, tasks: int) -> dict:
        """Call right when the run ends: CPU seconds and WAL bytes since start."""
        cpu = self.cpu()
        wal = wal_bytes_between(self.database_url, start.wal, wal_position(self.database_url))
        return {
            "cpu_s_per_1000_tasks": start.cpu.per_1000_tasks(cpu, tasks),
            "wal_bytes_per_task": round(wal / tasks),
        }

    def rows_since(self, start: RunStart) -> dict[str, int]:
        """Rows written per table since start; call after settle_table_stats()."""
        rows = rows_written(self.database_url)
        return {
            name: rows[name] - start.rows.get(name, 0)
            for name in sorted(rows)
            if rows[name] != start.rows.get(name, 0)
        }


def per_job_cost(cost_per_job_as_task: Mapping[str, object]) -> dict:
    """cpu_and_wal() measured with tasks=jobs, renamed per job: CPU ms and WAL bytes."""
    return {
        "cpu_ms_per_job": cost_per_job_as_task["cpu_s_per_1000_tasks"],
        "wal_bytes_per_job": cost_per_job_as_task["wal_bytes_per_task"],
    }


def rows_report(
    by_table: Mapping[str, float], tasks: int, minus: Mapping[str, float] | None = None
) -> dict:
    """Rows per task, in total and per table; `minus`: rows of other work in the window."""
    minus = minus or {}
    net = {name: count - minus.get(name, 0) for name, count in by_table.items()}
    return {
        "rows_written_per_task": round(sum(net.values()) / tasks, 2),
        "rows_written_per_task_by_table": {
            name: round(count / tasks, 3) for name, count in net.items() if round(count / tasks, 3)
        },
    }


@dataclass(frozen=True)
class RunStart:
    cpu: CpuSnapshot
    rows: Mapping[str, int]
    wal: str
