"""Every HTTP route and every JobService RPC refuses a missing, wrong or too-weak key,
and a refused call changes nothing in the database."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from google.protobuf import struct_pb2

from coremachine.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from tests.e2e.conftest import auth_headers, grpc_metadata
from tests.e2e.test_api_http import db_job_status, submit, wait_until

pytestmark = pytest.mark.e2e

ROLES = ("reader", "submitter", "admin")
WRONG_KEY = "not-a-key-anyone-was-given"

# Every operation of /openapi.json and the role it needs (None: open). The
# test fails when a route is added without being listed here.
HTTP_ROLES: dict[tuple[str, str], str | None] = {
    ("POST", "/api/jobs/submit/{job_type}"): "submitter",
    ("GET", "/api/jobs/status/{job_id}"): "reader",
    ("POST", "/api/jobs/{job_id}/cancel"): "submitter",
    ("POST", "/api/jobs/{job_id}/resubmit"): "submitter",
    ("GET", "/api/jobs/{job_id}/events"): "reader",
    ("GET", "/api/jobs/{job_id}/diagnosis"): "reader",
    ("GET", "/api/jobs/{job_id}/failures"): "reader",
    ("GET", "/api/workers"): "reader",
    ("GET", "/api/queues"): "reader",
    ("GET", "/api/db/jobs"): "reader",
    ("GET", "/api/db/jobs/{job_id}"): "reader",
    ("GET", "/api/db/tasks"): "reader",
    ("GET", "/api/db/tasks/{job_id}"): "reader",
    ("GET", "/api/db/stats"): "reader",
    ("POST", "/api/db/schema/redeploy"): "admin",
    ("GET", "/api/monitor/poison"): "reader",
    ("POST", "/api/monitor/poison"): "admin",
    ("GET", "/api/job-types"): "reader",
    ("GET", "/api/job-types/{job_type}"): "reader",
    ("GET", "/api/health"): None,
    ("POST", "/api/schedules"): "submitter",
    ("GET", "/api/schedules"): "reader",
    ("GET", "/api/schedules/{name}"): "reader",
    ("GET", "/api/schedules/{name}/firings"): "reader",
    ("POST", "/api/schedules/{name}/pause"): "submitter",
    ("POST", "/api/schedules/{name}/resume"): "submitter",
    ("POST", "/api/schedules/{name}/trigger"): "submitter",
    ("DELETE", "/api/schedules/{name}"): "submitter",
}
GRPC_ROLES = {
    "SubmitJob": "submitter",
    "GetJob": "reader",
    "ListJobs": "reader",
    "ListTasks": "reader",
    "CancelJob": "submitter",
    "ResubmitJob": "submitter",
    "WatchJob": "reader",
    "ListJobTypes": "reader",
    "ListWorkers": "reader",
    "DiagnoseJob": "reader",
    "CreateSchedule": "submitter",
    "GetSchedule": "reader",
    "ListSchedules": "reader",
    "ListScheduleFirings": "reader",
    "PauseSchedule": "submitter",
    "ResumeSchedule": "submitter",
    "TriggerSchedule": "submitter",
    "DeleteSchedule": "submitter",
}
# A yearly schedule (it never ticks during the test) the schedule routes act on
# (the positive walk deletes it), and one the dashboard's schedule pages show.
SCHEDULE = "auth-yearly"
UI_SCHEDULE = "auth-ui"
YEARLY = {"job_type": "hello_world", "parameters": {"n": 1}, "cron": "0 3 1 1 *"}


@dataclass
class Jobs:
    running: str  # cancellable: a refused cancel would otherwise change it
    cancelled: str  # resubmittable: a refused resubmit would otherwise change it
    extra: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def jobs(stack) -> Iterator[Jobs]:
    # Without a worker, jobs stay unfinished for as long as the test needs.
    stack.kill("worker")
    with httpx.Client(base_url=stack.http_url, headers=auth_headers(stack.api_key)) as http:
        running = submit(http, n=1, message="auth: running")
        cancelled = submit(http, n=1, message="auth: cancelled")
        for job_id in (running, cancelled):
            wait_until(lambda j=job_id: db_job_status(stack, j) == "processing", "job start")
        assert http.post(f"/api/jobs/{cancelled}/cancel").json()["changed"]
        for name in (SCHEDULE, "auth-doomed", UI_SCHEDULE):
            http.post("/api/schedules", json={"name": name, **YEARLY}).raise_for_status()
    yield Jobs(running, cancelled)
    stack.restart("worker")


def snapshot(stack) -> tuple:
    """What a refused call must not change: every job and task and their statuses."""
    with psycopg.connect(stack.database_url) as conn:
        jobs = conn.execute(
            "SELECT job_id, status::text, stage FROM coremachine.jobs ORDER BY job_id"
        ).fetchall()
        tasks = conn.execute(
            "SELECT task_id, status::text, attempt FROM coremachine.tasks ORDER BY task_id"
        ).fetchall()
        schedules = conn.execute(
            "SELECT name, paused FROM coremachine.schedules ORDER BY name"
        ).fetchall()
    return jobs, tasks, schedules


def http_request(method: str, path: str, jobs: Jobs) -> dict[str, Any]:
    """A request that would succeed (and change state) if auth let it through."""
    job_id = jobs.cancelled if path.endswith("/resubmit") else jobs.running
    if path.endswith("/events"):
        job_id = jobs.cancelled  # terminal: an accepted stream ends
    url = path.replace("{job_id}", job_id).replace("{job_type}", "hello_world")
    url = url.replace("{name}", SCHEDULE)
    request: dict[str, Any] = {"method": method, "url": url}
    if path == "/api/schedules" and method == "POST":
        request["json"] = {"name": "auth-created", **YEARLY}
    elif path == "/api/jobs/submit/{job_type}":
        request["json"] = {"n": 1, "message": "auth: should never exist"}
    elif path == "/api/db/schema/redeploy":
        request["params"] = {"confirm": "yes"}
    elif path == "/api/monitor/poison" and method == "POST":
        request["json"] = {"queue": "jobs", "sequences": ["1"], "action": "fail", "confirm": True}
    return request


def refusals(stack, required: str) -> list[tuple[str, dict[str, str], int]]:
    """(label, headers, expected status) for every way a caller may fall short."""
    cases = [
        ("no key", {}, 401),
        ("wrong bearer key", {"Authorization": f"Bearer {WRONG_KEY}"}, 401),
        ("wrong X-API-Key", {"X-API-Key": WRONG_KEY}, 401),
        ("not a bearer scheme", {"Authorization": f"Basic {stack.api_key}"}, 401),
        ("bearer without a key", {"Authorization": "Bearer"}, 401),
    ]
    for role in ROLES[: ROLES.index(required)]:
        cases.append((f"{role} key", auth_headers(stack.api_keys[role]), 403))
        cases.append((f"{role} X-API-Key", {"X-API-Key": stack.api_keys[role]}, 403))
    return cases


def test_openapi_lists_exactly_the_routes_under_test(stack):
    spec = httpx.get(f"{stack.http_url}/openapi.json").json()
    operations = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert operations == set(HTTP_ROLES)


def test_every_http_route_refuses_missing_wrong_and_weak_keys(stack, jobs):
    before = snapshot(stack)
    checked = 0
    with httpx.Client(base_url=stack.http_url, timeout=30) as client:
        for (method, path), required in HTTP_ROLES.items():
            if required is None:
                continue
            for label, headers, status in refusals(stack, required):
                r = client.request(**http_request(method, path, jobs), headers=headers)
                where = f"{method} {path} with {label}"
                assert r.status_code == status, f"{where}: {r.status_code} {r.text}"
                body = r.json()
                assert body["error"] == ("Unauthenticated" if status == 401 else "PermissionDenied")
                assert body["request_id"] == r.headers["X-Request-ID"]
                if status == 401:
                    assert r.headers["WWW-Authenticate"] == "Bearer", where
                else:
                    assert f"needs the {required} role" in body["message"], where
                checked += 1
    assert checked > 50
    assert snapshot(stack) == before, "a refused request changed the database"
    assert db_job_status(stack, jobs.running) == "processing"
    assert db_job_status(stack, jobs.cancelled) == "cancelled"


def test_open_routes_need_no_key(stack, jobs):
    for path in ("/openapi.json", "/docs"):
        assert httpx.get(f"{stack.http_url}{path}").status_code == 200
    r = httpx.get(f"{stack.http_url}/api/health")
    # The worker is stopped in this module, so health is honestly 503, but not 401.
    assert r.status_code == 503 and r.json()["components"]["services"]["worker"] != "serving"


def test_the_required_role_and_every_higher_one_get_through(stack, jobs):
    """The positive control: without it, a gateway refusing everyone would pass the above."""
    with httpx.Client(base_url=stack.http_url, timeout=30) as client:
        for (method, path), required in HTTP_ROLES.items():
            if required is None or method != "GET":
                continue  # GETs change nothing, so every role may be tried in turn
            for role in ROLES[ROLES.index(required) :]:
                r = client.request(
                    **http_request(method, path, jobs), headers=auth_headers(stack.api_keys[role])
                )
                assert r.status_code == 200, f"{method} {path} as {role}: {r.text}"
        # Then each mutating route once, with the lowest role allowed.
        cases = [
            ("POST", "/api/jobs/{job_id}/cancel", 200),
            ("POST", "/api/jobs/{job_id}/resubmit", 200),
            ("POST", "/api/monitor/poison", 200),
            ("POST", "/api/jobs/submit/{job_type}", 202),
            ("POST", "/api/schedules", 201),
            ("POST", "/api/schedules/{name}/pause", 200),
            ("POST", "/api/schedules/{name}/resume", 200),
            ("POST", "/api/schedules/{name}/trigger", 200),
            ("DELETE", "/api/schedules/{name}", 200),
        ]
        for method, path, status in cases:
            key = stack.api_keys[HTTP_ROLES[(method, path)]]
            r = client.request(**http_request(method, path, jobs), headers={"X-API-Key": key})
            assert r.status_code == status, f"{method} {path}: {r.text}"
        # The admin gets past the gateway; the state service refuses (disabled).
        r = client.request(
            **http_request("POST", "/api/db/schema/redeploy", jobs),
            headers=auth_headers(stack.api_keys["admin"]),
        )
        assert r.status_code == 403 and "STATE_ALLOW_SCHEMA_REDEPLOY" in r.json()["message"]
    assert db_job_status(stack, jobs.running) == "cancelled"


# -- gRPC --------------------------------------------------------------------------


def grpc_calls(client: jobs_pb2_grpc.JobServiceStub, jobs: Jobs) -> dict[str, Any]:
    """One call per RPC that would succeed (and change state) if auth let it through."""
    params = struct_pb2.Struct()
    params.update({"n": 1, "message": "grpc auth: should never exist"})
    return {
        "SubmitJob": lambda md: client.SubmitJob(
            jobs_pb2.SubmitJobRequest(job_type="hello_world", parameters=params), metadata=md
        ),
        "GetJob": lambda md: client.GetJob(
            jobs_pb2.GetJobRequest(job_id=jobs.running), metadata=md
        ),
        "ListJobs": lambda md: client.ListJobs(jobs_pb2.ListJobsRequest(), metadata=md),
        "ListTasks": lambda md: client.ListTasks(
            jobs_pb2.ListTasksRequest(job_id=jobs.running), metadata=md
        ),
        "CancelJob": lambda md: client.CancelJob(
            jobs_pb2.CancelJobRequest(job_id=jobs.running), metadata=md
        ),
        "ResubmitJob": lambda md: client.ResubmitJob(
            jobs_pb2.ResubmitJobRequest(job_id=jobs.cancelled), metadata=md
        ),
        "WatchJob": lambda md: list(
            client.WatchJob(jobs_pb2.WatchJobRequest(job_id=jobs.cancelled), metadata=md)
        ),
        "ListJobTypes": lambda md: client.ListJobTypes(jobs_pb2.ListJobTypesRequest(), metadata=md),
        "ListWorkers": lambda md: client.ListWorkers(jobs_pb2.ListWorkersRequest(), metadata=md),
        "DiagnoseJob": lambda md: client.DiagnoseJob(
            jobs_pb2.DiagnoseJobRequest(job_id=jobs.running), metadata=md
        ),
        "CreateSchedule": lambda md: client.CreateSchedule(
            jobs_pb2.CreateScheduleRequest(
                schedule=jobs_pb2.Schedule(
                    name="auth-grpc-created", job_type="hello_world", cron="0 3 1 1 *"
                )
            ),
            metadata=md,
        ),
        "GetSchedule": lambda md: client.GetSchedule(
            jobs_pb2.GetScheduleRequest(name="auth-doomed"), metadata=md
        ),
        "ListSchedules": lambda md: client.ListSchedules(
            jobs_pb2.ListSchedulesRequest(), metadata=md
        ),
        "ListScheduleFirings": lambda md: client.ListScheduleFirings(
            jobs_pb2.ListScheduleFiringsRequest(name="auth-doomed"), metadata=md
        ),
        "PauseSchedule": lambda md: client.PauseSchedule(
            jobs_pb2.PauseScheduleRequest(name="auth-doomed"), metadata=md
        ),
        "ResumeSchedule": lambda md: client.ResumeSchedule(
            jobs_pb2.ResumeScheduleRequest(name="auth-doomed"), metadata=md
        ),
        "TriggerSchedule": lambda md: client.TriggerSchedule(
            jobs_pb2.TriggerScheduleRequest(name="auth-doomed"), metadata=md
        ),
        "DeleteSchedule": lambda md: client.DeleteSchedule(
            jobs_pb2.DeleteScheduleRequest(name="auth-doomed"), metadata=md
        ),
    }


def test_grpc_roles_cover_every_rpc_of_the_proto():
    service = jobs_pb2.DESCRIPTOR.services_by_name["JobService"]
    assert {m.name for m in service.methods} == set(GRPC_ROLES)


def test_every_rpc_refuses_missing_wrong_and_weak_keys(stack, jobs):
    before = snapshot(stack)
    with grpc.insecure_channel(stack.grpc_address) as channel:
        calls = grpc_calls(jobs_pb2_grpc.JobServiceStub(channel), jobs)
        for name, required in GRPC_ROLES.items():
            cases = [
                ("no key", (), grpc.StatusCode.UNAUTHENTICATED),
                ("wrong bearer", (("authorization", f"Bearer {WRONG_KEY}"),), None),
                ("wrong x-api-key", (("x-api-key", WRONG_KEY),), None),
            ]
            cases = [(label, md, grpc.StatusCode.UNAUTHENTICATED) for label, md, _ in cases]
            for role in ROLES[: ROLES.index(required)]:
                cases.append((role, grpc_metadata(stack, role), grpc.StatusCode.PERMISSION_DENIED))
                cases.append(
                    (
                        f"{role} x-api-key",
                        (("x-api-key", stack.api_keys[role]),),
                        grpc.StatusCode.PERMISSION_DENIED,
                    )
                )
            for label, md, code in cases:
                with pytest.raises(grpc.RpcError) as err:
                    calls[name](md)
                assert err.value.code() == code, f"{name} with {label}: {err.value.details()}"
    assert snapshot(stack) == before, "a refused RPC changed the database"


def ensure_cancelled(stack, job_id: str) -> None:
    # Tests above may have resubmitted it (and with no worker it stays processing).
    headers = auth_headers(stack.api_key)
    httpx.post(f"{stack.http_url}/api/jobs/{job_id}/cancel", headers=headers)
    assert db_job_status(stack, job_id) == "cancelled"


def test_every_rpc_lets_its_role_through(stack, jobs):
    """The positive control for the refusals above."""
    with grpc.insecure_channel(stack.grpc_address) as channel:
        calls = grpc_calls(jobs_pb2_grpc.JobServiceStub(channel), jobs)
        for name, required in GRPC_ROLES.items():
            if name in ("ResubmitJob", "WatchJob"):
                ensure_cancelled(stack, jobs.cancelled)
            calls[name](grpc_metadata(stack, required))  # raises on any error


# -- the dashboard (/ui) --------------------------------------------------------------

# Every dashboard route and the role it needs (None: open). GETs of a lower role are
# sent to the sign-in page (no session) or refused (403); POSTs are refused.
UI_ROLES: dict[tuple[str, str], str | None] = {
    ("GET", "/ui"): "reader",
    ("GET", "/ui/login"): None,
    ("POST", "/ui/login"): None,
    ("POST", "/ui/logout"): "reader",
    ("GET", "/ui/jobs"): "reader",
    ("GET", "/ui/jobs/{job_id}"): "reader",
    ("GET", "/ui/jobs/{job_id}/tasks"): "reader",
    ("GET", "/ui/jobs/{job_id}/cancel"): "submitter",
    ("POST", "/ui/jobs/{job_id}/cancel"): "submitter",
    ("GET", "/ui/jobs/{job_id}/resubmit"): "submitter",
    ("POST", "/ui/jobs/{job_id}/resubmit"): "submitter",
    ("GET", "/ui/job-types"): "reader",
    ("GET", "/ui/job-types/{job_type}"): "reader",
    ("POST", "/ui/job-types/{job_type}/submit"): "submitter",
    ("GET", "/ui/workers"): "reader",
    ("GET", "/ui/queues"): "reader",
    ("GET", "/ui/queues/{queue}/dead-letters/{sequence}/{action}"): "admin",
    ("POST", "/ui/queues/{queue}/dead-letters/{sequence}/replay"): "admin",
    ("POST", "/ui/queues/{queue}/dead-letters/{sequence}/fail"): "admin",
    ("GET", "/ui/schedules"): "reader",
    ("GET", "/ui/schedules/{name}"): "reader",
    ("GET", "/ui/schedules/{name}/{action}"): "submitter",
    ("POST", "/ui/schedules/{name}/{action}"): "submitter",
}


def ui_routes_of_the_app() -> set[tuple[str, str]]:
    from fastapi.routing import APIRoute

    from coremachine.services.api_gateway.auth import DisabledAuthenticator
    from coremachine.services.api_gateway.backends import Backends
    from coremachine.services.api_gateway.http_app import create_app

    async def listed() -> set[tuple[str, str]]:
        # grpc.aio channels belong to a running loop (after an earlier test's
        # asyncio.run() there is no current one outside it). They connect
        # lazily: nothing is called, the routes are only listed.
        backends = Backends.connect("127.0.0.1:9", "127.0.0.1:9", "127.0.0.1:9")
        try:
            app = create_app(backends, DisabledAuthenticator())
        finally:
            await backends.close()
        # Included routers stay routers of their own (FastAPI 0.16x): their routes within.
        routes = []
        for route in app.routes:
            included = getattr(route, "original_router", None)
            routes.extend(included.routes if included is not None else [route])
        return {
            (method, route.path)
            for route in routes
            if isinstance(route, APIRoute) and route.path.startswith("/ui")
            for method in route.methods
        }

    return asyncio.run(listed())


def ui_url(path: str, jobs: Jobs) -> str:
    job_id = jobs.cancelled if "resubmit" in path else jobs.running
    return (
        path.replace("{job_id}", job_id)
        .replace("{job_type}", "hello_world")
        .replace("{queue}", "tasks")
        .replace("{sequence}", "1")
        .replace("{name}", UI_SCHEDULE)
        .replace("{action}", "pause" if path.startswith("/ui/schedules") else "replay")
    )


def ui_session(stack, role: str, login_headers: dict[str, str] | None = None) -> httpx.Client:
    """A client signed in to the dashboard with the stack's key of that role."""
    client = httpx.Client(base_url=stack.http_url, timeout=30)
    page = client.get("/ui/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post(
        "/ui/login",
        data={"csrf_token": token, "api_key": stack.api_keys[role]},
        headers=login_headers,
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/jobs", r.text
    client.last_login = r  # type: ignore[attr-defined]
    return client


def csrf_of(client: httpx.Client) -> str:
    return client.get("/ui/workers").text.split('name="csrf_token" value="')[1].split('"')[0]


def test_the_session_cookie_is_http_only_strict_and_secure_behind_tls(stack):
    plain = ui_session(stack, "reader")
    # Over plain HTTP here, so a Secure cookie would not come back: only the answer is read.
    behind_tls = ui_session(stack, "reader", login_headers={"X-Forwarded-Proto": "https"})
    try:
        for client, secure in ((plain, False), (behind_tls, True)):
            cookie = next(
                v
                for k, v in client.last_login.headers.multi_items()  # type: ignore[attr-defined]
                if k == "set-cookie" and v.startswith("cm_session=")
            )
            flags = {part.strip().lower() for part in cookie.split(";")[1:]}
            assert {"httponly", "samesite=strict", "path=/"} <= flags, cookie
            assert ("secure" in flags) is secure, cookie
            assert stack.api_keys["reader"] not in cookie
    finally:
        plain.close()
        behind_tls.close()


def test_ui_roles_list_exactly_the_dashboard_routes():
    assert ui_routes_of_the_app() == set(UI_ROLES)


def test_every_ui_route_refuses_no_session_a_forged_one_and_a_weak_role(stack, jobs):
    before = snapshot(stack)
    checked = 0
    anonymous = httpx.Client(base_url=stack.http_url, timeout=30)
    forged = httpx.Client(
        base_url=stack.http_url, timeout=30, cookies={"cm_session": "gAAAAAforged"}
    )
    # An API key in a header is not a dashboard session.
    header_only = httpx.Client(
        base_url=stack.http_url, timeout=30, headers=auth_headers(stack.api_key)
    )
    sessions = {role: ui_session(stack, role) for role in ROLES}
    try:
        for (method, path), required in UI_ROLES.items():
            if required is None:
                continue
            url = ui_url(path, jobs)
            for label, client in (
                ("no session", anonymous),
                ("forged session", forged),
                ("API key header", header_only),
            ):
                r = client.request(method, url, data={"csrf_token": "x"})
                where = f"{method} {path} with {label}"
                if method == "GET":
                    assert r.status_code == 303, f"{where}: {r.status_code}"
                    assert r.headers["location"].startswith("/ui/login?next="), where
                else:
                    assert r.status_code == 403, f"{where}: {r.status_code}"
                checked += 1
            for role in ROLES[: ROLES.index(required)]:
                client = sessions[role]
                r = client.request(method, url, data={"csrf_token": csrf_of(client)})
                where = f"{method} {path} as {role}"
                assert r.status_code == 403, f"{where}: {r.status_code} {r.text[:200]}"
                assert f"needs the {required} role" in r.text, where
                checked += 1
            if method == "POST":
                # The right role without the session's CSRF token.
                r = sessions[required].post(url, data={"csrf_token": "forged"})
                assert r.status_code == 403 and "CSRF" in r.text, f"{method} {path} no CSRF"
                checked += 1
        assert checked > 60
    finally:
        for client in (anonymous, forged, header_only, *sessions.values()):
            client.close()
    assert snapshot(stack) == before, "a refused dashboard request changed the database"


def test_every_ui_page_opens_for_its_role_and_sign_out_ends_the_session(stack, jobs):
    """The positive control of the walk above."""
    for role in ROLES:
        client = ui_session(stack, role)
        try:
            for (method, path), required in UI_ROLES.items():
                if method != "GET" or required is None:
                    continue
                if ROLES.index(role) < ROLES.index(required) or "dead-letters" in path:
                    continue  # refused above; the dead letter page needs a real letter
                r = client.get(ui_url(path, jobs), follow_redirects=True)
                assert r.status_code == 200, f"GET {path} as {role}: {r.status_code}"
                assert "<main" in r.text
            # The session cookie authorises the page scripts' reads of the JSON API...
            assert client.get(f"/api/jobs/status/{jobs.running}").status_code == 200
            # ...never a write.
            r = client.post(f"/api/jobs/{jobs.running}/cancel")
            assert r.status_code == 401, r.text
            r = client.post("/ui/logout", data={"csrf_token": csrf_of(client)})
            assert r.status_code == 303
            assert client.get("/ui/jobs").status_code == 303
            assert client.get(f"/api/jobs/status/{jobs.running}").status_code == 401
        finally:
            client.close()
