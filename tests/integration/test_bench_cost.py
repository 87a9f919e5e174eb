"""The benchmark's cost accounting (bench/cost.py) on a real PostgreSQL server."""

from __future__ import annotations

import time

import psutil
import psycopg
import pytest

from bench.cost import (
    CostMeter,
    CpuSnapshot,
    postgres_cpu_seconds,
    postgres_server,
    process_cpu_seconds,
    rows_report,
    rows_written,
    wal_bytes_between,
    wal_position,
)
from bench.million import database_mb

BUSY_QUERY = "SELECT count(*) FROM generate_series(1, 3000000) AS s(i) WHERE i % 7 = 0"


def flushed(conn: psycopg.Connection) -> None:
    # A backend flushes its table counters when it goes idle, at most once a
    # second; forcing it makes the counts visible to the next reader at once.
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")


def written_by(db_url: str, *statements: str) -> dict[str, int]:
    """The rows each table counted while the statements ran (counters flushed)."""
    before = rows_written(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
        flushed(conn)
    return {table: n - before.get(table, 0) for table, n in rows_written(db_url).items()}


def test_rows_written_counts_inserts_updates_and_deletes_of_app_tables(db_url: str):
    written = written_by(
        db_url,
        "INSERT INTO coremachine.leases (name, holder, expires_at)"
        " SELECT 'l' || i, 'bench', now() FROM generate_series(1, 5) AS s(i)",
        "UPDATE coremachine.leases SET holder = 'other' WHERE name IN ('l1', 'l2')",
        "DELETE FROM coremachine.leases WHERE name = 'l3'",
        # Not an app table: never counted.
        "CREATE TEMP TABLE scratch AS SELECT 1 AS x",
    )
    assert written["coremachine.leases"] == 5 + 2 + 1
    assert all(name.split(".")[0] in ("coremachine", "broker") for name in written)


def test_rows_written_out_of_line_count_as_the_tables_toast(db_url: str):
    # 6 KB of random hex does not compress below the in-line limit: TOASTed.
    written = written_by(
        db_url,
        "INSERT INTO coremachine.leases (name, holder, expires_at)"
        " SELECT 'big' || i, (SELECT string_agg(md5(random()::text || j), '')"
        "                     FROM generate_series(1, 200) AS g(j)), now()"
        " FROM generate_series(1, 3) AS s(i)",
    )
    assert written["coremachine.leases"] == 3
    assert written["coremachine.leases (toast)"] >= 3


def test_wal_grows_with_writes(db_url: str):
    start = wal_position(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO coremachine.leases (name, holder, expires_at)"
            " SELECT 'w' || i, repeat('x', 100), now() FROM generate_series(1, 1000) AS s(i)"
        )
    # 1,000 rows of 100+ bytes each, in the WAL at least once.
    assert wal_bytes_between(db_url, start, wal_position(db_url)) > 100_000


def test_postgres_server_is_the_postmaster_of_the_local_server(db_url: str):
    # The tests' server runs on this machine (127.0.0.1 or the embedded one).
    postmaster = postgres_server(db_url)

    assert postmaster is not None
    with psycopg.connect(db_url) as conn:
        assert psutil.Process(conn.info.backend_pid).parent() == postmaster
    assert "postgres" in postmaster.name()


def test_postgres_cpu_keeps_a_backend_that_exited(db_url: str):
    postmaster = postgres_server(db_url)
    assert postmaster is not None
    before = postgres_cpu_seconds(postmaster)
    with psycopg.connect(db_url) as conn:
        conn.execute(BUSY_QUERY)
        backend = psutil.Process(conn.info.backend_pid)
        spent = process_cpu_seconds(backend)
    deadline = time.monotonic() + 10
    while backend.is_running() and backend.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the backend did not exit"
        time.sleep(0.05)
    time.sleep(0.2)  # the postmaster reaps it right after it exits

    # The backend is gone; its CPU is still in the server's total (other
    # databases' work on a shared server can only add to it).
    assert spent > 0.05
    assert postgres_cpu_seconds(postmaster) - before >= spent * 0.9


def test_meter_reports_each_service_and_postgres_per_1000_tasks(db_url: str):
    me = psutil.Process()
    meter = CostMeter(db_url, {"bench": me.pid})
    start = meter.start()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    cost = meter.cpu_and_wal(start, tasks=500)

    assert set(cost["cpu_s_per_1000_tasks"]) >= {"bench"}
    # 0.3 s of this process's CPU over 500 tasks: 0.6 s per 1,000.
    assert cost["cpu_s_per_1000_tasks"]["bench"] == pytest.approx(0.6, abs=0.1)


def test_per_1000_tasks_is_the_difference_scaled():
    before = CpuSnapshot({"state": 1.0, "worker": 2.0})
    after = CpuSnapshot({"state": 3.0, "worker": 2.5, "new": 1.0})

    assert before.per_1000_tasks(after, 4000) == {"state": 0.5, "worker": 0.125}


def test_rows_report_takes_other_work_off():
    report = rows_report(
        {"coremachine.tasks": 3000, "broker.messages": 3100}, 1000, {"broker.messages": 100}
    )

    assert report["rows_written_per_task"] == 6.0
    assert report["rows_written_per_task_by_table"] == {
        "coremachine.tasks": 3.0,
        "broker.messages": 3.0,
    }


def test_database_size_grows_with_what_is_written(db_url: str):
    before = database_mb(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO coremachine.leases (name, holder, expires_at)"
            " SELECT 'g' || i, repeat('x', 1000), now() FROM generate_series(1, 5000) AS s(i)"
        )

    # 5,000 rows of 1 KB: about 5 MB more on disk.
    assert database_mb(db_url) - before >= 4.0
