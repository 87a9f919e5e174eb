"""Chaos: replicas of every service (2 state, 2 orchestrator, 3 worker
processes), SIGKILLed at random throughout a job of thousands of tasks and
restarted by the stack's supervisor. The database must show every task
completed once, each stage advanced once, and the job's result right."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from coremachine.stack.processes import Stack
from tests.databases import drop_database
from tests.e2e.conftest import TERMINAL, auth_headers, make_stack
from tests.e2e.faults import FAST_RECOVERY_ENV, assert_counted_once, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.fault]

N = 1500  # 3,000 tasks
KILLS = 12
REPLICAS = {"state": 2, "orchestrator": 2, "worker": 3}
VICTIMS = ("state", "orchestrator", "worker")  # the gateway is how we submit


@pytest.fixture
def chaos_stack(admin_url, tmp_path) -> Iterator[Stack]:
    stack, url = make_stack(
        admin_url,
        tmp_path,
        replicas=REPLICAS,
        extra_env={
            **FAST_RECOVERY_ENV,
            "HEALTH_PROBE_SECONDS": "0.5",
            "WORKER_CONCURRENCY": "32",
            "STAGE_CREATE_CHUNK_SIZE": "250",
            "LOG_LEVEL": "WARNING",
        },
    )
    stack.up()
    yield stack
    stack.stop()
    drop_database(admin_url, url)


def job_row(url: str, job_id: str) -> tuple[str, dict | None]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status::text, result_data FROM coremachine.jobs WHERE job_id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def tasks_done(url: str, job_id: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM coremachine.tasks WHERE job_id = %s AND status = 'completed'",
            (job_id,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_random_kills_of_every_replicated_service_leave_a_correct_job(chaos_stack):
    stack = chaos_stack
    seed = int(os.environ.get("CHAOS_SEED") or time.time())
    rng = random.Random(seed)
    restarts: list[str] = []
    stopping = threading.Event()
    supervisor = threading.Thread(
        target=stack.supervise, args=(stopping, restarts.append), daemon=True
    )
    supervisor.start()
    with httpx.Client(
        base_url=stack.http_url, timeout=60, headers=auth_headers(stack.api_key)
    ) as client:
        r = client.post(
            "/api/jobs/submit/hello_world",
            json={"n": N, "task_delay_ms": 20, "message": f"chaos {seed}"},
        )
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]["job_id"]

    kills: list[str] = []
    # Kills at random points of the job's progress (so that they fall
    # throughout it on a fast machine as on a slow one): one of each service
    # first, in random order, then anyone's.
    order = rng.sample(VICTIMS, len(VICTIMS))
    for threshold in sorted(rng.sample(range(50, 2 * N - 200), KILLS)):
        wait_until(
            lambda t=threshold: tasks_done(stack.database_url, job_id) >= t,
            120,
            f"{threshold} tasks done (seed {seed}, kills so far {kills})",
        )
        service = order.pop() if order else rng.choice(VICTIMS)
        alive = [p.name for p in stack.replicas_of(service) if stack.alive(p.name)] or [
            p.name for s in VICTIMS for p in stack.replicas_of(s) if stack.alive(p.name)
        ]
        victim = rng.choice(alive)
        stack.kill(victim)
        kills.append(victim)
    # Then the survivors and the restarted finish the job.
    wait_until(lambda: job_row(stack.database_url, job_id)[0] in TERMINAL, 120, "the job to end")
    status, result = job_row(stack.database_url, job_id)
    # The supervisor brings back every process it saw die, and says so.
    wait_until(lambda: all(stack.alive(name) for name in stack.processes), 60, "all back")
    stopping.set()
    supervisor.join(timeout=30)
    print(f"\nchaos seed {seed}: {len(kills)} kills {kills}")
    assert sum(" restarted " in line for line in restarts) >= len(kills), restarts

    assert status == "completed", (status, result)
    assert {k.split("-")[0] for k in kills} == set(VICTIMS)
    assert_counted_once(stack.database_url, job_id, N)
    assert result is not None
    assert result["total_tasks"] == 2 * N
    assert result["stages"]["1"]["completed"] == N and result["stages"]["2"]["completed"] == N
    assert result["replies"] == [f"Replying to: chaos {seed} from task {i}!" for i in range(N)]
    with psycopg.connect(stack.database_url) as conn:
        started = conn.execute(
            "SELECT stage, count(*) FROM coremachine.job_events WHERE job_id = %s"
            " AND event_type = 'stage_started' GROUP BY stage ORDER BY stage",
            (job_id,),
        ).fetchall()
    assert started == [(1, 1), (2, 1)], started
