"""`python -m bench.queue_design`: what PostgreSQL spends per task in two queue designs.

Isolated: a scratch database on DATABASE_URL's server, migrated with the
project's migrations, dropped at the end. One job of n tasks (one stage, no
flow limits), driven by one client, sequentially, with the statements the
services execute (named queries of services/state/queries.sql and of the
broker's postgres_sql/queries.sql, with the parameters store.py,
task_store.py and brokers/postgres.py pass):

- A, today: creating a chunk of 2,000 tasks (STAGE_CREATE_CHUNK_SIZE) is
  create_stage_tasks' transaction (lock_job, insert_stage / lock_stages,
  insert_tasks, the broker's `send` of the task messages in the same
  transaction: the direct outbox); per batch of 128 (WORKER_RECEIVE_BATCH)
  the worker's `receive`, then `claim_tasks`, then complete_tasks'
  transaction (lock_jobs_of_tasks, settle_succeeded, count_into_stages,
  finish_stage when nothing remains, append_events), then the broker's
  `complete` (the DELETE). receive and complete run on a second connection
  with synchronous_commit=off, as the broker's lock pool does.
- B, the task row as the message: no broker row. Creation inserts the task
  rows only; a claim is one statement: coremachine.pick_queued_tasks below
  takes up to `limit` queued tasks of the queue from coremachine.tasks in rank
  order, and the services' own claim_tasks leases them (task_started events
  included); completion is A's transaction without the broker DELETE.

B's schema (scratch database only, never a migration):
- tasks get `queue`, `visible_at` and `rank_at`, set when the task is inserted
  (its stage's queue, now, now minus the job's priority aging: the broker's
  own rank, postgres_sql/migrations/0003). A column, not a join with
  job_stages: a claim must read "the first queued tasks of queue Q in rank
  order" from one index in that order; with the queue on job_stages it would
  read every running stage of the queue and merge them, and the rank needs the
  job's priority anyway. A stage's queue never changes, so the copy is safe.
  visible_at is what a retry's backoff would set (it is in the claim's filter).
- `tasks_ready_idx ON tasks (queue, rank_at) WHERE status = 'queued'`: only
  queued tasks are in it (a task leaves it when claimed), and no tie-breaker
  column: equal ranks (a chunk's tasks share its transaction's now()) are
  deduplicated by the btree, and their order does not matter.
- pick_queued_tasks locks the candidates' jobs first (key order), then picks
  the tasks again FOR UPDATE SKIP LOCKED among those jobs: the lock order of
  every other path (jobs, then tasks) holds, so a claim cannot deadlock with
  a cancel that holds the job and waits for its tasks. It costs a second
  short index scan per claim; picking the tasks first would invert the order.
  claim_tasks then takes the job locks this transaction already holds.
  Flow limits, held tasks and retries are left out (the job has no limits).

Measured per design and phase (create, receive, claim, complete,
broker_delete, and a final VACUUM of the touched tables: autovacuum may be off
on the server, and either way the vacuum a design leaves behind is part of
its cost): on-CPU seconds of the measured backends (/proc/<pid>/sched, exact
to the nanosecond, read around each statement group), statement wall time,
WAL bytes (pg_current_wal_insert_lsn between groups: server-wide, so other
databases' writes on a shared server count too). Per design: user+system
CPU of the backends from psutil (the cross-check of the per-phase sums), the
rest of the server's CPU (walwriter, checkpointer, other databases), rows
written (pg_stat_user_tables, counters flushed), dead tuples left before the
VACUUM, tasks per second. Every design starts from truncated tables, after a
CHECKPOINT (so full-page images weigh alike) and with fresh connections; the
tables are ANALYZEd after the create phase (unmeasured), as autovacuum would
after so many inserts. Writes bench/latest-queue-design.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import platform
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.rows import dict_row

from bench.cost import postgres_cpu_seconds
from coremachine.services.state.events import JOB_END_EVENTS
from coremachine.services.state.outbox import Outbox
from coremachine.services.state.schema import migrate_all
from coremachine.services.state.sql import Q
from coremachine.shared.broker import MAX_DELIVERY_REASON
from coremachine.shared.brokers.postgres import _Q as BQ
from coremachine.shared.brokers.postgres import DEFAULT_PRIORITY_AGING_SECONDS, channel_for
from coremachine.shared.domain.ids import task_id_for
from coremachine.shared.pg_json import records, records_with_raw, values
from coremachine.shared.pg_urls import with_dbname

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_OUTPUT = Path(__file__).with_name("latest-queue-design.json")
CHUNK = 2000  # STAGE_CREATE_CHUNK_SIZE (orchestrator/settings.py)
BATCH = 128  # WORKER_RECEIVE_BATCH (worker/settings.py)
LEASE_SECONDS = 30  # TASK_LEASE_SECONDS
LOCK_SECONDS = 30.0  # BROKER_LOCK_SECONDS
MAX_DELIVERY_COUNT = 10  # BROKER_MAX_DELIVERY_COUNT
QUEUE = "tasks"  # TASKS_QUEUE: the stage has no queue of its own
PRIORITY = 5
RESULT = '{"ok": true}'
WORKER_ID = "queue-design-worker"
TABLES = (
    *("coremachine.jobs", "coremachine.job_stages", "coremachine.tasks"),
    *("coremachine.job_event_runs", "broker.messages"),
)

B_SCHEMA = """
ALTER TABLE coremachine.tasks
    ADD COLUMN IF NOT EXISTS queue text,
    ADD COLUMN IF NOT EXISTS visible_at timestamptz,
    ADD COLUMN IF NOT EXISTS rank_at timestamptz;

-- B's receive: the jobs of the queue's first ready tasks locked in key order
-- (the lock order of every path: jobs, then tasks), then those tasks picked
-- FOR UPDATE SKIP LOCKED, as the claims coremachine.claim_tasks takes. The
-- lease itself is claim_tasks, the function the services call, unchanged.
CREATE OR REPLACE FUNCTION coremachine.pick_queued_tasks(from_queue text, max_tasks integer)
RETURNS jsonb
LANGUAGE plpgsql
AS $$
DECLARE
    locked text[];
    picked jsonb;
BEGIN
    SELECT coalesce(array_agg(l.job_id), '{}') INTO locked
    FROM (SELECT j.job_id FROM coremachine.jobs j
          WHERE j.job_id IN (SELECT t.job_id FROM coremachine.tasks t
                             WHERE t.queue = from_queue AND t.status = 'queued'
                               AND t.visible_at <= now()
                             ORDER BY t.rank_at
                             LIMIT max_tasks)
          ORDER BY j.job_id
          FOR UPDATE) l;
    SELECT coalesce(jsonb_agg(jsonb_build_object('task_id', p.task_id, 'attempt', p.attempt)),
                    '[]')
    INTO picked
    FROM (SELECT t.task_id, t.attempt FROM coremachine.tasks t
          WHERE t.queue = from_queue AND t.status = 'queued' AND t.visible_at <= now()
            AND t.job_id = ANY(locked)
          ORDER BY t.rank_at
          LIMIT max_tasks
          FOR UPDATE SKIP LOCKED) p;
    RETURN picked;
END;
$$;
"""
B_INDEX = (
    "CREATE INDEX IF NOT EXISTS tasks_ready_idx ON coremachine.tasks (queue, rank_at)"
    " WHERE status = 'queued'"
)
# Q.insert_tasks with B's three columns.
B_INSERT_TASKS = """
INSERT INTO coremachine.tasks
    (task_id, job_id, job_type, task_type, stage, task_index, parameters,
     queue, visible_at, rank_at)
SELECT t.task_id, %(job_id)s, %(job_type)s, t.task_type, %(stage)s, t.task_index, t.parameters,
       %(queue)s, now(), now() - make_interval(secs => (%(priority)s - 5) * %(aging_seconds)s::float8)
FROM jsonb_to_recordset(%(tasks)s::jsonb)
     AS t(task_id text, task_type text, task_index int, parameters jsonb)
ON CONFLICT (task_id) DO NOTHING
RETURNING task_id, task_type, attempt
"""
# One statement: the argument (the pick) runs before claim_tasks leases what it picked.
B_CLAIM = (
    "SELECT * FROM coremachine.claim_tasks(%(worker_id)s, %(lease_seconds)s,"
    " coremachine.pick_queued_tasks(%(queue)s, %(limit)s))"
)
# A table's TOAST rows count too, as "<table> (toast)": a run of 128 events
# (migration 0012) is stored out of line.
STATS = """
SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del, n_dead_tup
FROM pg_stat_user_tables WHERE schemaname IN ('coremachine', 'broker')
UNION ALL
SELECT n.nspname || '.' || c.relname || ' (toast)', t.n_tup_ins, t.n_tup_upd, t.n_tup_del,
       t.n_dead_tup
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_stat_all_tables t ON t.relid = c.reltoastrelid
WHERE n.nspname IN ('coremachine', 'broker') AND c.relkind = 'r'
"""


def lsn_bytes(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def on_cpu_seconds(pid: int) -> float:
    """A process's on-CPU time so far (user + system), from the scheduler, in ns
    resolution: psutil's clock ticks (10 ms) are too coarse per statement group."""
    with open(f"/proc/{pid}/sched") as f:
        for line in f:
            if line.startswith("se.sum_exec_runtime"):
                return float(line.split(":")[1]) / 1000.0
    raise RuntimeError(f"no se.sum_exec_runtime for {pid}")


class Meter:
    """Per phase: on-CPU seconds of the measured backends, wall time, WAL bytes."""

    def __init__(self, admin: psycopg.Connection, pids: list[int]) -> None:
        self.admin = admin
        self.pids = pids
        self.phases: dict[str, dict[str, float]] = defaultdict(
            lambda: {"cpu_s": 0.0, "wall_s": 0.0, "wal_bytes": 0, "groups": 0}
        )
        self.lsn = self.wal()

    def wal(self) -> int:
        row = self.admin.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        return lsn_bytes(row[0]) if row else 0

    def cpu(self) -> float:
        return sum(on_cpu_seconds(pid) for pid in self.pids)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        cpu, started = self.cpu(), time.perf_counter()
        yield
        wall, spent = time.perf_counter() - started, self.cpu() - cpu
        # After the clock is read: the LSN's round trip is not the statements'.
        lsn = self.wal()
        p = self.phases[name]
        p["cpu_s"] += spent
        p["wall_s"] += wall
        p["wal_bytes"] += lsn - self.lsn
        p["groups"] += 1
        self.lsn = lsn


def send_params(job_id: str, inserted: list[tuple[str, str, int]]) -> dict[str, Any]:
    """The broker's `send` parameters for a chunk's task messages, as the direct
    outbox builds them (Outbox.task, then enqueue_in_transaction)."""
    outbox = Outbox("jobs", QUEUE, direct=True)
    messages = [outbox.task(t, job_id, tt, a, priority=PRIORITY)[1] for t, tt, a in inserted]
    return {
        "queue": QUEUE,
        "channel": channel_for(QUEUE),
        "aging_seconds": DEFAULT_PRIORITY_AGING_SECONDS,
        "messages": records(
            {
                "message_id": m.message_id,
                "body": base64.b64encode(m.body).decode(),
                "properties": dict(m.properties),
                "scheduled_at": None,
                "priority": m.priority,
            }
            for m in messages
        ),
    }


def insert_job(conn: psycopg.Connection, job_id: str) -> None:
    """create_job without a first stage: the job row and its job_created event."""
    with conn.transaction():
        conn.execute(
            Q.insert_job,
            {
                "job_id": job_id,
                "job_type": "noop",
                "parameters": "{}",
                "total_stages": 1,
                "metadata": "{}",
                "default_result": False,
                "processing": False,
                "definition": "",
                "trace_context": None,
                "priority": PRIORITY,
                "not_before": None,
                "max_running": None,
                "flow_limited": False,
            },
        )
        append_events(conn, [event(job_id, "job_created", None, None, {"job_type": "noop"})])


def event(job_id: str, kind: str, stage: int | None, task_id: str | None, data: dict) -> dict:
    return {"job_id": job_id, "event_type": kind, "stage": stage, "task_id": task_id, "data": data}


def append_events(conn: psycopg.Connection, events: list[dict]) -> None:
    conn.execute(Q.append_events, {"events": records(events), "end_events": list(JOB_END_EVENTS)})


def create_chunk(
    conn: psycopg.Connection, design: str, job_id: str, n: int, first: int, count: int
) -> None:
    """create_stage_tasks' transaction for tasks first .. first + count - 1."""
    with conn.transaction():
        conn.execute(Q.lock_job, {"job_id": job_id}).fetchone()
        stage = conn.execute(
            Q.insert_stage,
            {
                "job_id": job_id, "stage": 1, "task_count": n, "max_attempts": 4,
                "backoff_base_ms": 1000, "backoff_max_ms": 60_000, "max_failed_tasks": 0,
                "queue": None, "task_timeout_ms": 0, "heartbeat_timeout_ms": 0,
                "previous_results": False, "concurrency_keys": [], "concurrency_limits": [],
                "rate_limit": None,
            },
        ).fetchone()  # fmt: skip
        events = []
        if stage is not None:  # the first chunk: the job starts its stage
            conn.execute(Q.start_job_stage, {"job_id": job_id, "stage": 1}).fetchone()
            events.append(event(job_id, "stage_started", 1, None, {"task_count": n}))
        else:
            conn.execute(Q.lock_stages, {"job_ids": [job_id], "stages": [1]}).fetchone()
        params = {
            "job_id": job_id,
            "job_type": "noop",
            "stage": 1,
            "tasks": records_with_raw(
                (
                    (
                        {
                            "task_id": task_id_for(job_id, 1, i),
                            "task_type": "noop",
                            "task_index": i,
                        },
                        f'{{"i": {i}}}',
                    )
                    for i in range(first, first + count)
                ),
                "parameters",
            ),
        }
        if design == "A":
            inserted = conn.execute(Q.insert_tasks, params).fetchall()
            conn.execute(BQ.send, send_params(job_id, inserted))
        else:
            params.update(
                queue=QUEUE, priority=PRIORITY, aging_seconds=DEFAULT_PRIORITY_AGING_SECONDS
            )
            conn.execute(B_INSERT_TASKS, params).fetchall()
        if events:
            append_events(conn, events)


def receive(broker: psycopg.Connection) -> list[tuple]:
    """The broker's receive: (seq, body, lock_token) of up to BATCH messages."""
    rows = broker.execute(
        BQ.receive,
        {
            "queue": QUEUE,
            "limit": BATCH,
            "lock_seconds": LOCK_SECONDS,
            "max_delivery_count": MAX_DELIVERY_COUNT,
            "max_delivery_reason": MAX_DELIVERY_REASON,
            "aging_seconds": DEFAULT_PRIORITY_AGING_SECONDS,
        },
    ).fetchall()
    return [(r[0], bytes(r[2]), r[7]) for r in rows if r[0] is not None]


def claim_a(conn: psycopg.Connection, bodies: list[bytes]) -> list[tuple]:
    claims = [json.loads(b) for b in bodies]  # the worker decodes each TaskMessage
    rows = conn.execute(
        Q.claim_tasks,
        {
            "worker_id": WORKER_ID,
            "lease_seconds": LEASE_SECONDS,
            "claims": records([{"task_id": c["task_id"], "attempt": c["attempt"]} for c in claims]),
        },
    ).fetchall()
    return [r for r in rows if r[13] is None]  # granted (held_for NULL)


def claim_b(conn: psycopg.Connection) -> list[tuple]:
    rows = conn.execute(
        B_CLAIM,
        {"worker_id": WORKER_ID, "lease_seconds": LEASE_SECONDS, "queue": QUEUE, "limit": BATCH},
    ).fetchall()
    return [r for r in rows if r[13] is None]  # granted (held_for NULL), as claim_a


def complete(conn: psycopg.Connection, granted: list[tuple]) -> None:
    """complete_tasks' transaction for a batch of successes (no flow limits)."""
    with conn.transaction():
        jobs = conn.execute(
            Q.lock_jobs_of_tasks, {"task_ids": values([g[0] for g in granted])}
        ).fetchall()
        settled = conn.execute(
            Q.settle_succeeded,
            {
                "outcomes": records_with_raw(
                    (({"task_id": g[0], "token": g[8], "trace": None}, RESULT) for g in granted),
                    "result",
                )
            },
        ).fetchall()
        events = [
            event(job_id, "task_completed", stage, task_id, {"attempt": attempt})
            for task_id, job_id, stage, _index, attempt in settled
        ]
        per_stage: dict[tuple[str, int], int] = defaultdict(int)
        for _task, job_id, stage, _index, _attempt in settled:
            per_stage[(job_id, stage)] += 1
        keys = sorted(per_stage)
        cur = conn.cursor(row_factory=dict_row)
        counted = cur.execute(
            Q.count_into_stages,
            {
                "job_ids": [k[0] for k in keys],
                "stages": [k[1] for k in keys],
                "done": [per_stage[k] for k in keys],
                "completed": [per_stage[k] for k in keys],
                "failed": [0 for _ in keys],
            },
        ).fetchall()
        for stage in counted:
            if stage["remaining"] == 0 and stage["status"] == "running":
                # evaluate_stage: the barrier; the finalize message it writes
                # next (one per job, jobs queue) is left out.
                summary = {
                    "task_count": stage["task_count"], "completed": stage["completed"],
                    "failed": 0, "cancelled": 0, "status": "completed",
                }  # fmt: skip
                conn.execute(
                    Q.finish_stage,
                    {
                        "job_id": stage["job_id"], "stage": stage["stage"],
                        "status": "completed", "summary": json.dumps(summary), "next_stage": None,
                    },
                ).fetchone()  # fmt: skip
                events.append(
                    event(stage["job_id"], "stage_completed", stage["stage"], None, summary)
                )
        assert len(jobs) == 1 and len(settled) == len(granted), "a batch was refused"
        append_events(conn, events)


def table_stats(admin: psycopg.Connection) -> dict[str, tuple[int, ...]]:
    return {r[0]: tuple(r[1:]) for r in admin.execute(STATS).fetchall()}


def rows_between(before: dict, after: dict) -> dict[str, dict[str, int]]:
    """Rows inserted, updated and deleted per table between two table_stats()."""
    rows = {}
    for table, counts in after.items():
        was = before.get(table, (0, 0, 0, 0))
        written = {k: counts[i] - was[i] for i, k in enumerate(("ins", "upd", "del"))}
        if any(written.values()):
            rows[table] = written
    return rows


def flush_stats(*conns: psycopg.Connection) -> None:
    # A backend flushes its table counters when it goes idle, at most once a
    # second; forced, the flush happens as this statement ends.
    for conn in conns:
        conn.execute("SELECT pg_stat_force_next_flush()")


def backend_times(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def per_1000(value: float, n: int) -> float:
    return round(value * 1000 / n, 4)


def run_design(url: str, admin: psycopg.Connection, design: str, n: int, round_no: int) -> dict:
    """One design on truncated tables: create n tasks, claim and complete them all."""
    admin.execute(f"TRUNCATE coremachine.jobs, broker.messages CASCADE; {B_SCHEMA}")
    # B's index exists during B only: A's inserts must not maintain it.
    admin.execute(B_INDEX if design == "B" else "DROP INDEX IF EXISTS coremachine.tasks_ready_idx")
    admin.execute("CHECKPOINT")
    job_id = hashlib.sha256(f"queue-design-{design}-{round_no}-{uuid.uuid4()}".encode()).hexdigest()
    with (
        psycopg.connect(url, autocommit=True) as state,
        psycopg.connect(url, autocommit=True, options="-c synchronous_commit=off") as broker,
    ):
        insert_job(state, job_id)
        pids = [state.info.backend_pid, broker.info.backend_pid]
        flush_stats(admin, state, broker)  # the TRUNCATE's resets too
        stats_before = table_stats(admin)
        postmaster = psutil.Process(pids[0]).parent()
        assert postmaster is not None
        # The server's other CPU: all but the measured backends and this
        # script's admin connection (LSN reads, ANALYZE).
        admin_pid = [admin.info.backend_pid]
        server_cpu, cpu_before = postgres_cpu_seconds(postmaster), backend_times(pids)
        admin_cpu = backend_times(admin_pid)
        meter = Meter(admin, pids)
        started = time.perf_counter()
        for first in range(0, n, CHUNK):
            with meter.phase("create"):
                create_chunk(state, design, job_id, n, first, min(CHUNK, n - first))
        create_wall = time.perf_counter() - started
        # What autovacuum would do after so many inserts: plans see the real sizes.
        admin.execute("ANALYZE coremachine.tasks, broker.messages, coremachine.job_stages")
        meter.lsn = meter.wal()
        loop_started, done = time.perf_counter(), 0
        while True:
            if design == "A":
                with meter.phase("receive"):
                    received = receive(broker)
                if not received:
                    break
                with meter.phase("claim"):
                    granted = claim_a(state, [body for _, body, _ in received])
            else:
                with meter.phase("claim"):
                    granted = claim_b(state)
                if not granted:
                    break
            with meter.phase("complete"):
                complete(state, granted)
            if design == "A":
                with meter.phase("broker_delete"):
                    locks = records({"seq": s, "token": str(tok)} for s, _, tok in received)
                    deleted = broker.execute(BQ.complete, {"locks": locks}).fetchall()
                assert len(deleted) == len(received), "a message's lock was lost"
            done += len(granted)
        loop_wall = time.perf_counter() - loop_started
        cpu_after = backend_times(pids)
        other_cpu = (
            postgres_cpu_seconds(postmaster)
            - server_cpu
            - (cpu_after - cpu_before)
            - (backend_times(admin_pid) - admin_cpu)
        )
        flush_stats(state, broker)
        stats_after = table_stats(admin)
        with meter.phase("vacuum"):
            state.execute(f"VACUUM {', '.join(TABLES)}")
        # Not 0 if another session's snapshot held vacuum back.
        left = {t: s[3] for t, s in table_stats(admin).items() if s[3]}
        statuses: dict[str, int] = dict(
            state.execute(
                "SELECT status::text, count(*) FROM coremachine.tasks GROUP BY status"
            ).fetchall()
        )
    rows = rows_between(stats_before, stats_after)
    phases = {
        name: {
            "cpu_s_per_1000_tasks": per_1000(p["cpu_s"], n),
            "wall_s_per_1000_tasks": per_1000(p["wall_s"], n),
            "wal_bytes_per_task": round(p["wal_bytes"] / n, 1),
            "statement_groups": int(p["groups"]),
        }
        for name, p in meter.phases.items()
    }
    work = [p for name, p in meter.phases.items() if name != "vacuum"]
    cpu = {name: p["cpu_s"] for name, p in meter.phases.items()}
    # The three steps of a task whatever the design (A's receive is part of
    # its claim, A's broker DELETE part of its completion).
    steps = {
        "create": cpu["create"],
        "claim": cpu.get("receive", 0.0) + cpu["claim"],
        "complete": cpu["complete"] + cpu.get("broker_delete", 0.0),
        "vacuum": cpu["vacuum"],
    }
    return {
        "design": design,
        "round": round_no,
        "tasks": n,
        "task_statuses": statuses,
        "tasks_completed": done,
        "create_tasks_per_s": round(n / create_wall, 1),
        "loop_tasks_per_s": round(done / loop_wall, 1),
        "cpu_s_per_1000_tasks_by_step": {k: per_1000(v, n) for k, v in steps.items()},
        "phases": phases,
        "cpu_s_per_1000_tasks": per_1000(sum(p["cpu_s"] for p in work), n),
        "cpu_s_per_1000_tasks_with_vacuum": per_1000(
            sum(p["cpu_s"] for p in meter.phases.values()), n
        ),
        "backend_cpu_s_psutil": round(cpu_after - cpu_before, 2),
        "other_postgres_cpu_s": round(other_cpu, 2),
        "wal_bytes_per_task": round(sum(p["wal_bytes"] for p in work) / n, 1),
        "rows_written_per_task": round(sum(sum(r.values()) for r in rows.values()) / n, 3),
        "rows_written": rows,
        # Absolute: the TRUNCATE reset them to 0 before the run.
        "dead_tuples_before_vacuum": {t: s[3] for t, s in sorted(stats_after.items()) if s[3]},
        "dead_tuples_after_vacuum": left,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def server_facts(admin: psycopg.Connection) -> dict[str, str]:
    names = (
        *("server_version", "autovacuum", "fsync", "synchronous_commit", "shared_buffers"),
        *("full_page_writes", "wal_compression", "checkpoint_timeout"),
    )
    return {name: admin.execute(f"SHOW {name}").fetchone()[0] for name in names}  # type: ignore[index]


def run_in_database(url: str, n: int = 100_000, rounds: int = 2) -> dict:
    """Both designs, alternating (A, B, A, B ...), in a migrated database."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    with psycopg.connect(url, autocommit=True) as admin:
        facts = server_facts(admin)
        runs = [
            run_design(url, admin, design, n, r)
            for r in range(1, rounds + 1)
            for design in ("A", "B")
        ]
        admin.execute("TRUNCATE coremachine.jobs, broker.messages CASCADE")
    return {
        "n": n,
        "rounds": rounds,
        "batch": BATCH,
        "chunk": CHUNK,
        "machine": {
            "cpus": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()}",
            "load_average_before": load_before,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "postgres": facts,
        "summary": summary(runs),
        "runs": runs,
    }


def summary(runs: list[dict]) -> dict:
    """Per design, each round's key figures side by side."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        s = out.setdefault(run["design"], defaultdict(list))
        for key in ("cpu_s_per_1000_tasks", "cpu_s_per_1000_tasks_with_vacuum",
                    "rows_written_per_task", "wal_bytes_per_task", "loop_tasks_per_s",
                    "create_tasks_per_s"):  # fmt: skip
            s[key].append(run[key])
        for name, cpu in run["cpu_s_per_1000_tasks_by_step"].items():
            s[f"{name}_cpu_s_per_1000_tasks"].append(cpu)
        for name, p in run["phases"].items():
            s[f"{name}_wal_bytes_per_task"].append(p["wal_bytes_per_task"])
        s["dead_tuples_before_vacuum"].append(sum(run["dead_tuples_before_vacuum"].values()))
    return {design: dict(s) for design, s in out.items()}


def run(server_url: str, n: int = 100_000, rounds: int = 2) -> dict:
    """run_in_database in a scratch database, created, migrated and always dropped."""
    name = f"cm_queue_design_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_dbname(server_url, name)
    try:
        asyncio.run(migrate_all(url, url))
        return run_in_database(url, n, rounds)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000, help="tasks per design and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of A then B")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    report = run(os.environ.get("DATABASE_URL", DEFAULT_URL), args.n, args.rounds)
    text = json.dumps(report, indent=2)
    print(text)
    args.output.write_text(text + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
