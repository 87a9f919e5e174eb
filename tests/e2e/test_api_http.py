"""The HTTP routes against the real services: what a client of each route notices."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from collections.abc import Iterator
from http.client import HTTPConnection

import httpx
import psycopg
import pytest

from tests.e2e.conftest import wait_for_job

pytestmark = pytest.mark.e2e


def submit(http: httpx.Client, **params) -> str:
    r = http.post("/api/jobs/submit/hello_world", json=params)
    assert r.status_code in (200, 202), r.text
    return r.json()["job"]["job_id"]


def db_job_status(stack, job_id: str) -> str:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT status::text FROM coremachine.jobs WHERE job_id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return row[0]


def wait_until(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def read_sse(response: httpx.Response) -> Iterator[dict[str, str]]:
    """Parses a Server-Sent Events body into {field: value} records."""
    record: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if record:
                yield record
            record = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            record[name] = value.removeprefix(" ")


def stream_events(http: httpx.Client, job_id: str, **kw) -> list[dict[str, str]]:
    with http.stream("GET", f"/api/jobs/{job_id}/events", timeout=60, **kw) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return [rec for rec in read_sse(r) if "event" in rec]


# -- cancel and resubmit -------------------------------------------------------


def test_cancel_a_running_job_then_resubmit_it_to_completion(stack, http):
    job_id = submit(http, n=4, task_delay_ms=400, message="cancel me")
    wait_until(lambda: db_job_status(stack, job_id) == "processing", "the job to start")

    r = http.post(f"/api/jobs/{job_id}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["changed"] is True and r.json()["job"]["status"] == "cancelled"
    assert db_job_status(stack, job_id) == "cancelled"
    # Cancelling again changes nothing and says so.
    again = http.post(f"/api/jobs/{job_id}/cancel")
    assert again.status_code == 200 and again.json()["changed"] is False

    r = http.post(f"/api/jobs/{job_id}/resubmit")
    assert r.status_code == 200, r.text
    assert r.json()["job"]["status"] in ("queued", "processing")
    job = wait_for_job(http, job_id)
    assert job["status"] == "completed", job
    assert len(job["result"]["replies"]) == 4

    # A completed job cannot be resubmitted: 409, nothing changes.
    r = http.post(f"/api/jobs/{job_id}/resubmit")
    assert r.status_code == 409 and r.json()["error"] == "Conflict"
    assert db_job_status(stack, job_id) == "completed"


def test_cancel_and_resubmit_of_unknown_or_malformed_ids(stack, http):
    for action in ("cancel", "resubmit"):
        r = http.post(f"/api/jobs/{'e' * 64}/{action}")
        assert r.status_code == 404 and r.json()["error"] == "NotFound", r.text
        r = http.post(f"/api/jobs/nope/{action}")
        assert r.status_code == 400 and "job_id" in r.json()["message"]


# -- the event stream ----------------------------------------------------------


def test_event_stream_follows_a_job_live_and_ends_when_it_ends(stack, http):
    job_id = submit(http, n=3, task_delay_ms=150, message="stream me")
    records = stream_events(http, job_id)  # opened while the job runs
    events, end = records[:-1], records[-1]
    assert end["event"] == "end" and "id" not in end
    seqs = [int(e["id"]) for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "ids are the gap-free seqs"
    assert events[0]["event"] == "job_created"
    assert events[-1]["event"] == "job_completed"
    assert json.loads(end["data"])["last_seq"] == seqs[-1]
    kinds = [e["event"] for e in events]
    assert kinds.count("task_completed") == 6 and kinds.count("stage_completed") == 2
    for e in events:
        assert json.loads(e["data"])["seq"] == int(e["id"])


def test_event_stream_levels_leave_out_task_events_or_keep_only_the_end(stack, http):
    job_id = submit(http, n=3, task_delay_ms=50, message="levels")
    ends = stream_events(http, job_id, params={"end_only": "true"})  # opened while it runs
    assert [e["event"] for e in ends] == ["job_completed", "end"]
    job_level = stream_events(http, job_id, params={"job_level_only": "true"})
    kinds = [e["event"] for e in job_level]
    assert kinds[0] == "job_created" and kinds[-2:] == ["job_completed", "end"]
    assert kinds.count("stage_completed") == 2 and not any(k.startswith("task_") for k in kinds)


def test_event_stream_resumes_after_last_event_id_or_after(stack, http):
    job_id = submit(http, n=2, message="resume me")
    wait_for_job(http, job_id)
    full = [int(e["id"]) for e in stream_events(http, job_id) if "id" in e]
    cut = full[len(full) // 2]
    resumed = stream_events(http, job_id, headers={"Last-Event-ID": str(cut)})
    assert [int(e["id"]) for e in resumed if "id" in e] == [s for s in full if s > cut]
    resumed = stream_events(http, job_id, params={"after": cut})
    assert [int(e["id"]) for e in resumed if "id" in e] == [s for s in full if s > cut]
    # Resuming after the last event of a finished job: just the end marker.
    tail = stream_events(http, job_id, headers={"Last-Event-ID": str(full[-1])})
    assert [e["event"] for e in tail] == ["end"]


def test_event_stream_errors_before_it_starts(stack, http):
    r = http.get(f"/api/jobs/{'a' * 64}/events")
    assert r.status_code == 404 and r.json()["error"] == "NotFound"
    job_id = submit(http, n=1, message="bad resume")
    r = http.get(f"/api/jobs/{job_id}/events", headers={"Last-Event-ID": "soon"})
    assert r.status_code == 400 and "Last-Event-ID" in r.json()["message"]
    r = http.get(f"/api/jobs/{job_id}/events", params={"after": -1})
    assert r.status_code == 400 and r.json()["message"].startswith("after:")


# -- /api/db -------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_jobs(stack) -> list[str]:
    with httpx.Client(
        base_url=stack.http_url, headers={"X-API-Key": stack.api_key}, timeout=30
    ) as http:
        ids = [submit(http, n=2, message=f"listed {i}") for i in range(3)]
        for job_id in ids:
            wait_for_job(http, job_id)
    return ids


def all_pages(http: httpx.Client, path: str, key: str, **params) -> list[dict]:
    items: list[dict] = []
    token = ""
    for _ in range(1000):
        r = http.get(path, params={**params, "page_token": token})
        assert r.status_code == 200, r.text
        items += r.json()[key]
        token = r.json()["next_page_token"]
        if not token:
            return items
    raise AssertionError("pagination did not end")


def test_db_jobs_paginates_without_gaps_or_duplicates(stack, http, three_jobs):
    first = http.get("/api/db/jobs", params={"limit": 2})
    assert first.status_code == 200
    assert len(first.json()["jobs"]) == 2 and first.json()["next_page_token"]
    jobs = all_pages(http, "/api/db/jobs", "jobs", limit=2)
    ids = [j["job_id"] for j in jobs]
    assert len(ids) == len(set(ids))
    with psycopg.connect(stack.database_url) as conn:
        in_db = {r[0] for r in conn.execute("SELECT job_id FROM coremachine.jobs")}
    assert set(ids) == in_db and set(three_jobs) <= set(ids)
    created = [j["created_at"] for j in jobs]
    assert created == sorted(created, reverse=True), "newest first"


def test_db_jobs_filters(stack, http, three_jobs):
    jobs = all_pages(http, "/api/db/jobs", "jobs", status="completed", job_type="hello_world")
    assert set(three_jobs) <= {j["job_id"] for j in jobs}
    assert {j["status"] for j in jobs} == {"completed"}
    assert http.get("/api/db/jobs", params={"job_type": "noop"}).json()["jobs"] == []
    failed = http.get("/api/db/jobs", params={"status": "failed"}).json()["jobs"]
    assert not set(three_jobs) & {j["job_id"] for j in failed}
    assert all(j["status"] == "failed" for j in failed)
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    r = http.get("/api/db/jobs", params={"since": future})
    assert r.json() == {"jobs": [], "next_page_token": ""}
    recent = {j["job_id"] for j in http.get("/api/db/jobs", params={"since": "1"}).json()["jobs"]}
    assert set(three_jobs) <= recent
    # A huge limit is clamped, not refused.
    assert http.get("/api/db/jobs", params={"limit": 10**9}).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"since": "-5"}, "since"),
        ({"limit": 0}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"page_token": "garbage"}, "page_token"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_db_jobs_bad_query_is_400_naming_the_field(stack, http, params, field):
    r = http.get("/api/db/jobs", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "InvalidArgument"
    assert field in r.json()["message"]


def test_db_job_by_id_returns_that_job(stack, http, three_jobs):
    for job_id in three_jobs:  # the reference ignored the id and listed jobs
        r = http.get(f"/api/db/jobs/{job_id}")
        assert r.status_code == 200
        job = r.json()["job"]
        assert job["job_id"] == job_id and job["status"] == "completed"
        assert "stage_results" in job
    r = http.get(f"/api/db/jobs/{'b' * 64}")
    assert r.status_code == 404 and r.json()["error"] == "NotFound"


def test_db_tasks_of_a_job(stack, http, three_jobs):
    job_id = three_jobs[0]
    r = http.get(f"/api/db/tasks/{job_id}")
    assert r.status_code == 200
    tasks = r.json()["tasks"]
    assert r.json()["job_id"] == job_id
    assert [(t["stage"], t["task_index"]) for t in tasks] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert {t["job_id"] for t in tasks} == {job_id}
    stage2 = http.get(f"/api/db/tasks/{job_id}", params={"stage": 2}).json()["tasks"]
    assert [t["stage"] for t in stage2] == [2, 2]
    paged = all_pages(http, f"/api/db/tasks/{job_id}", "tasks", limit=1)
    assert [t["task_id"] for t in paged] == [t["task_id"] for t in tasks]
    r = http.get(f"/api/db/tasks/{'c' * 64}")
    assert r.status_code == 404 and r.json()["error"] == "NotFound"


def test_db_tasks_across_jobs_with_filters(stack, http, three_jobs):
    tasks = all_pages(
        http, "/api/db/tasks", "tasks", status="completed", job_type="hello_world", limit=3
    )
    assert {t["status"] for t in tasks} == {"completed"}
    assert {t["job_id"] for t in tasks} >= set(three_jobs)
    assert len({t["task_id"] for t in tasks}) == len(tasks)
    assert http.get("/api/db/tasks", params={"job_type": "noop"}).json()["tasks"] == []
    stage1 = http.get("/api/db/tasks", params={"stage": 1, "limit": 1000}).json()["tasks"]
    assert stage1 and {t["stage"] for t in stage1} == {1}


def test_db_stats_match_the_database(stack, http, three_jobs):
    r = http.get("/api/db/stats")
    assert r.status_code == 200
    with psycopg.connect(stack.database_url) as conn:
        jobs = dict(conn.execute("SELECT status::text, count(*) FROM coremachine.jobs GROUP BY 1"))
        tasks = dict(
            conn.execute("SELECT status::text, count(*) FROM coremachine.tasks GROUP BY 1")
        )
    body = r.json()
    assert body["jobs_by_status"] == jobs and body["tasks_by_status"] == tasks
    assert body["tables"] and body["generated_at"]


# -- schema redeploy -------------------------------------------------------------


def test_schema_redeploy_is_refused_unless_the_state_service_allows_it(stack, http, three_jobs):
    r = http.post("/api/db/schema/redeploy")
    assert r.status_code == 400 and r.json()["message"].startswith("confirm:")
    r = http.post("/api/db/schema/redeploy", params={"confirm": "yes"})
    assert r.status_code == 403, r.text
    assert "STATE_ALLOW_SCHEMA_REDEPLOY" in r.json()["message"]
    for job_id in three_jobs:  # nothing was dropped
        assert db_job_status(stack, job_id) == "completed"
    r = http.get("/api/db/schema/redeploy", params={"confirm": "yes"})
    assert r.status_code == 405


# -- health ----------------------------------------------------------------------


def test_health_reports_dependencies_and_queues_without_a_key(stack):
    r = httpx.get(f"{stack.http_url}/api/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "healthy"
    components = body["components"]
    assert components["database"] == "ok" and components["broker"] == "ok"
    assert set(components["services"]) == {"state", "orchestrator", "worker"}
    for queue in ("jobs", "tasks"):
        assert set(components["queues"][queue]) == {"depth", "dead_letters"}
    assert r.headers["cache-control"] == "no-cache"


# -- limits and the error contract ------------------------------------------------


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (json.dumps({"n": 1, "message": "x", "deep": nested(21)}), "deeper than 20"),
        (json.dumps({"n": 1, "message": "x" * 70_000}), "exceed 65536 bytes"),
        ("[" * 50_000 + "]" * 50_000, "exceed"),
        ('{"n": NaN}', "JSON"),
        ("[" * 30_000 + "]" * 30_000, "deeper than 20"),
    ],
)
def test_parameter_limits_are_400_and_create_nothing(stack, http, body, expect):
    with psycopg.connect(stack.database_url) as conn:
        before = conn.execute("SELECT count(*) FROM coremachine.jobs").fetchone()[0]
    r = http.post(
        "/api/jobs/submit/hello_world",
        content=body.encode(),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert expect in r.json()["message"]
    with psycopg.connect(stack.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM coremachine.jobs").fetchone()[0] == before


def test_depth_just_inside_the_limit_reaches_the_orchestrator(stack, http):
    # 20 levels pass the gateway; the orchestrator then names the unknown field.
    r = http.post("/api/jobs/submit/hello_world", json={"n": 1, "deep": nested(19)})
    assert r.status_code == 400 and r.json()["message"].startswith("deep:")


def test_body_over_the_size_limit_is_413(stack, http):
    r = http.post(
        "/api/jobs/submit/hello_world",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"
    assert r.headers["X-Request-ID"] == r.json()["request_id"]


def test_every_error_has_the_common_body_and_a_request_id(stack, http):
    responses = [
        http.get("/api/nothing-here"),
        http.put("/api/db/jobs"),
        http.get("/api/db/jobs", params={"limit": -1}),
        http.get(f"/api/jobs/status/{'d' * 64}"),
        httpx.get(f"{stack.http_url}/api/db/stats"),
    ]
    assert [r.status_code for r in responses] == [404, 405, 400, 404, 401]
    for r in responses:
        body = r.json()
        assert set(body) == {"error", "message", "request_id"}, body
        assert r.headers["X-Request-ID"] == body["request_id"]
        assert "detail" not in body
    assert "GET" in responses[1].headers["allow"]
    # A caller's own request id is echoed back.
    r = http.get("/api/db/stats", headers={"X-Request-ID": "trace-123"})
    assert r.headers["X-Request-ID"] == "trace-123"


def test_openapi_documents_the_routes_without_fastapis_422(stack):
    r = httpx.get(f"{stack.http_url}/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert "422" not in json.dumps(
        {p: {m: op["responses"] for m, op in ops.items()} for p, ops in spec["paths"].items()}
    )
    for path in (
        "/api/jobs/{job_id}/events",
        "/api/db/tasks/{job_id}",
        "/api/monitor/poison",
        "/api/db/schema/redeploy",
    ):
        assert path in spec["paths"]
    assert httpx.get(f"{stack.http_url}/docs").status_code == 200


def test_gateway_shutdown_ends_open_streams_promptly(stack, http):
    # No worker: the job stays unfinished, so its stream would otherwise never end.
    stack.kill("worker")
    try:
        job_id = submit(http, n=1, message="stream across a shutdown")
        records: list[dict[str, str]] = []
        with http.stream("GET", f"/api/jobs/{job_id}/events", timeout=60) as r:
            lines = read_sse(r)
            records.append(next(rec for rec in lines if "event" in rec))  # the stream is open
            gateway = stack.procs["api_gateway"]
            started = time.monotonic()
            gateway.terminate()
            records += list(lines)
            assert gateway.wait(timeout=30) == 0
            assert time.monotonic() - started < 4, "an open stream held the shutdown up"
        assert records[0]["id"] == "1"
        error = records[-1]
        assert error["event"] == "error" and json.loads(error["data"])["error"] == "Unavailable"
    finally:
        stack.restart("api_gateway")
        stack.restart("worker")
    wait_for_job(http, job_id)


def test_an_idle_connection_outlives_the_clients_own_keep_alive(stack):
    """A connection idle for longer than a client keeps one (httpx: 5 s) is still open.

    A server that closes idle connections first races the client's next
    request on them, which then fails with a reset instead of an answer.
    """
    url = httpx.URL(stack.http_url)
    conn = HTTPConnection(url.host, url.port, timeout=10)
    try:
        conn.request("GET", "/api/health")
        first = conn.getresponse()
        first.read()
        assert first.status in (200, 503) and not first.will_close
        idle = conn.sock
        time.sleep(6.5)
        idle.setblocking(False)
        try:
            closed = idle.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            closed = False  # nothing to read and not closed: still open
        idle.setblocking(True)
        assert not closed, "the gateway closed an idle connection after less than 6.5 s"
        conn.request("GET", "/api/health")
        second = conn.getresponse()
        second.read()
        assert second.status in (200, 503)
        assert conn.sock is idle, "the second request needed a new connection"
    finally:
        conn.close()
