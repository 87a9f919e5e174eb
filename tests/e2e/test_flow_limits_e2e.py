"""Flow limits end to end: three workers of concurrency 50, a concurrency key
limited to 5 shared by two job types, a rate limit of 20/s over 400 tasks, a
running-job limit and a delayed start. Every limit is sampled from the
database while the work runs."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from coremachine.stack.processes import Stack
from tests.databases import drop_database
from tests.e2e.conftest import auth_headers, make_stack, wait_for_job
from tests.e2e.faults import wait_until
from tests.e2e.replicas import Replicas

pytestmark = pytest.mark.e2e

APPS = "coremachine.builtin:create_app,tests.e2e.flow_app:app"


@pytest.fixture(scope="module")
def flow_stack(admin_url, tmp_path_factory) -> Iterator[Stack]:
    stack, url = make_stack(
        admin_url,
        tmp_path_factory.mktemp("flow"),
        extra_env={"COREMACHINE_APPS": APPS, "WORKER_CONCURRENCY": "50", "LOG_LEVEL": "WARNING"},
    )
    stack.up()
    replicas = Replicas(stack)
    for i in (2, 3):
        replicas.add("worker", f"worker-{i}", WORKER_ID=f"worker-{i}")
    yield stack
    replicas.stop_all()
    stack.stop()
    drop_database(admin_url, url)


@pytest.fixture
def http(flow_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=flow_stack.http_url, timeout=30, headers=auth_headers(flow_stack.api_key)
    ) as client:
        yield client


def submit(http: httpx.Client, job_type: str, query: str = "", **params) -> str:
    response = http.post(f"/api/jobs/submit/{job_type}{query}", json=params)
    assert response.status_code == 202, response.text
    return response.json()["job"]["job_id"]


class Sampler(threading.Thread):
    """Samples one count from the database as often as it can, keeping the peak."""

    def __init__(self, database_url: str, sql: str, *args: object) -> None:
        super().__init__(daemon=True)
        self.database_url, self.sql, self.args = database_url, sql, args
        self.peak = 0
        self.samples = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            while not self.stop.is_set():
                row = conn.execute(self.sql, self.args).fetchone()
                self.peak = max(self.peak, int(row[0]) if row else 0)
                self.samples += 1
                self.stop.wait(0.01)


def test_a_key_limited_to_5_never_has_more_than_5_running_across_3_workers(flow_stack, http):
    running = Sampler(
        flow_stack.database_url,
        "SELECT count(*) FROM coremachine.tasks WHERE status = 'processing'"
        " AND slot_keys @> ARRAY['tenant:acme']",
    )
    other = Sampler(
        flow_stack.database_url,
        "SELECT count(*) FROM coremachine.tasks WHERE status = 'processing'"
        " AND slot_keys @> ARRAY['tenant:globex']",
    )
    running.start()
    other.start()
    run = uuid.uuid4().hex
    # Two job types share the key; another tenant has its own five slots.
    jobs = [
        submit(http, "tenant_ingest", tenant="acme", n=60, seconds=0.2, run=run),
        submit(http, "tenant_export", tenant="acme", n=60, seconds=0.2, run=run),
        submit(http, "tenant_ingest", tenant="globex", n=30, seconds=0.2, run=run),
    ]
    # While it runs, the job says what its queued tasks wait for.
    waiting: list[str] = []

    def says_it_waits() -> bool:
        job = http.get(f"/api/jobs/status/{jobs[0]}").json()
        waiting.append(job["waiting"] or "")
        return "concurrency key 'tenant:acme'" in (job["waiting"] or "")

    wait_until(says_it_waits, timeout=30, what="the waiting reason")
    try:
        ended = [wait_for_job(http, j, timeout=180) for j in jobs]
    finally:
        running.stop.set()
        other.stop.set()
        running.join()
        other.join()
    assert [j["status"] for j in ended] == ["completed"] * 3
    assert running.samples > 50
    assert running.peak == 5, f"peak {running.peak} tasks of tenant:acme ran at once"
    assert other.peak == 5
    with psycopg.connect(flow_stack.database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'), count(DISTINCT lease_owner),"
            " count(*) FILTER (WHERE held_for IS NOT NULL) FROM coremachine.tasks"
            " WHERE job_id = ANY(%s)",
            (jobs,),
        ).fetchone()
        dead = conn.execute("SELECT count(*) FROM broker.messages WHERE dead_lettered").fetchone()
    assert row is not None and row[0] == 150 and row[2] == 0
    assert dead is not None and dead[0] == 0, "a held task's message was dead-lettered"


def test_a_rate_limit_of_20_per_second_spaces_400_task_starts(flow_stack, http):
    job_id = submit(http, "rated", n=400, run=uuid.uuid4().hex)
    job = wait_for_job(http, job_id, timeout=180)
    assert job["status"] == "completed", job
    with psycopg.connect(flow_stack.database_url) as conn:
        starts = [
            r[0]
            for r in conn.execute(
                "SELECT started_at FROM coremachine.tasks WHERE job_id = %s ORDER BY started_at",
                (job_id,),
            ).fetchall()
        ]
    assert len(starts) == 400
    span = (starts[-1] - starts[0]).total_seconds()
    # 20 at once (the burst), then 380 at 20/s: at least 19 s.
    assert span >= 19.0, span
    busiest = max(
        sum(1 for s in starts[i:] if s < first + dt.timedelta(seconds=1))
        for i, first in enumerate(starts)
    )
    assert busiest <= 20 + 20, busiest


def test_at_most_one_job_of_a_limited_type_runs_and_the_others_wait_their_turn(flow_stack, http):
    jobs = [submit(http, "one_at_a_time", seconds=0.5 + i / 100) for i in range(3)]
    statuses = [http.get(f"/api/jobs/status/{j}").json() for j in jobs]
    assert [s["status"] for s in statuses[1:]] == ["queued", "queued"]
    assert "at most 1 job(s) of type 'one_at_a_time'" in statuses[2]["waiting"]
    ended = [wait_for_job(http, j, timeout=60) for j in jobs]
    assert [j["status"] for j in ended] == ["completed"] * 3
    with psycopg.connect(flow_stack.database_url) as conn:
        rows = conn.execute(
            "SELECT j.job_id, min(t.started_at), max(t.completed_at) FROM coremachine.jobs j"
            " JOIN coremachine.tasks t ON t.job_id = j.job_id WHERE j.job_id = ANY(%s)"
            " GROUP BY j.job_id ORDER BY 2",
            (jobs,),
        ).fetchall()
    assert [r[0] for r in rows] == jobs, "they ran in submission order"
    for (_, _, ended_at), (_, started_at, _) in itertools.pairwise(rows):
        assert started_at >= ended_at, "two ran at once"


def test_a_delayed_job_waits_queued_and_starts_at_its_time(flow_stack, http):
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    job_id = submit(
        http, "sleepy", f"?not_before={at.isoformat().replace('+00:00', 'Z')}", seconds=0.01
    )
    job = http.get(f"/api/jobs/status/{job_id}").json()
    assert job["status"] == "queued" and job["not_before"] is not None
    assert "starts at" in job["waiting"]
    ended = wait_for_job(http, job_id, timeout=60)
    assert ended["status"] == "completed"
    with psycopg.connect(flow_stack.database_url) as conn:
        row = conn.execute(
            "SELECT min(started_at) FROM coremachine.tasks WHERE job_id = %s", (job_id,)
        ).fetchone()
    assert row is not None and row[0] >= at


def test_a_high_priority_job_is_received_before_queued_work(flow_stack, http):
    # A backlog of 3,000 tasks queued, then a priority 9 job: it is done while
    # most of the backlog still waits (at the normal priority it would come
    # after all of it).
    big = submit(http, "noop", n=3000, run=uuid.uuid4().hex)
    wait_until(
        lambda: (
            (http.get(f"/api/jobs/status/{big}").json()["stages"] or [{}])[0].get("task_count")
            == 3000
        ),
        timeout=60,
        what="the backlog's first stage",
    )
    urgent = submit(http, "noop", "?priority=9", n=1, run=uuid.uuid4().hex)
    done = wait_for_job(http, urgent, timeout=120)
    assert done["priority"] == 9
    backlog = http.get(f"/api/jobs/status/{big}").json()
    assert backlog["stages"][0]["remaining"] >= 1000, "the urgent job waited behind the backlog"
    wait_for_job(http, big, timeout=300)
