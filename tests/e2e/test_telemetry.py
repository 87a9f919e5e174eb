"""Proof of the telemetry: the four services export OTLP spans to a receiver this
test runs, and serve Prometheus metrics that match the jobs they ran.

One job is one trace across every service and queue hop; each task attempt
has its span; each stage advancement links the spans of its tasks; a worker
killed mid-task leaves a trace that goes on with the task's next attempt.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from coremachine.stack.processes import SERVICES, Stack
from coremachine_sdk import Client
from tests.e2e.conftest import auth_headers, make_stack, wait_for_job
from tests.telemetry.otlp_receiver import OtlpReceiver, Span

pytestmark = pytest.mark.e2e

SECRET = "parameter-value-that-must-not-leak"
GATEWAY, ORCHESTRATOR, STATE, WORKER = (
    "coremachine-api_gateway",
    "coremachine-orchestrator",
    "coremachine-state",
    "coremachine-worker",
)


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


# Messages written straight into the queue table in the state transaction, or through
# the outbox table and its relay: the trace context travels either way.
@pytest.fixture(scope="module", params=["direct", "relay"])
def stack(request, admin_url: str, tmp_path_factory, receiver: OtlpReceiver) -> Iterator[Stack]:
    stack, url = make_stack(
        admin_url,
        tmp_path_factory.mktemp("telemetry"),
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "COREMACHINE_APPS": "tests.telemetry.telemetry_app:app",
            # A killed worker's lease expires soon, and the janitor looks often.
            "TASK_LEASE_SECONDS": "3",
            "BROKER_LOCK_SECONDS": "3",
            "JANITOR_INTERVAL_SECONDS": "1",
            "WORKER_HEARTBEAT_SECONDS": "1",
            "OUTBOX_DIRECT_ENQUEUE": "true" if request.param == "direct" else "false",
        },
    )
    stack.up()
    yield stack
    codes = stack.stop()
    from tests.databases import drop_database

    drop_database(admin_url, url)
    assert all(code == 0 for code in codes.values()), f"unclean exit codes: {codes}"


@pytest.fixture
def http(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=stack.http_url, timeout=30, headers=auth_headers(stack.api_key)
    ) as client:
        yield client


def submit(http: httpx.Client, **parameters) -> str:
    r = http.post("/api/jobs/submit/traced", json={"tag": SECRET, **parameters})
    assert r.status_code == 202, r.text
    return r.json()["job"]["job_id"]


def trace_id_of(stack: Stack, job_id: str) -> str:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT trace_context FROM coremachine.jobs WHERE job_id = %s", (job_id,)
        ).fetchone()
    assert row is not None and row[0], "the job has no stored trace context"
    return row[0].split("-")[1]


def attempts(spans: list[Span], task_type: str) -> list[Span]:
    return [s for s in spans if s.name == f"run {task_type}"]


def roots(spans: list[Span]) -> list[Span]:
    """Spans whose parent is not among `spans` (the services export on their own clocks,
    so a child can arrive before its parent: wait until one root is left)."""
    ids = {s.span_id for s in spans}
    return [s for s in spans if s.parent_span_id not in ids]


def test_one_job_is_one_trace_across_the_four_services(stack, http, receiver):
    job_id = submit(http, n=3, flaky=1)
    assert wait_for_job(http, job_id)["status"] == "completed"
    trace_id = trace_id_of(stack, job_id)

    def complete(spans: list[Span]) -> bool:
        mine = [s for s in spans if s.trace_id == trace_id]
        names = Counter(s.name for s in mine)
        return (
            names["run traced_work"] == 4
            and names["run traced_reply"] == 3
            and names["advance stage 2"] == 1
            and names["complete job"] == 1
            and len(roots(mine)) == 1
        )

    receiver.wait_for(complete)
    spans = receiver.of_trace(trace_id)
    by_id = {s.span_id: s for s in spans}
    assert {s.service for s in spans} >= {GATEWAY, ORCHESTRATOR, STATE, WORKER}
    # Every span of the job hangs from the one the HTTP request started.
    [root] = roots(spans)
    assert root.service == GATEWAY and root.kind == "server", root

    # A span per task attempt: attempt, task type, queue and outcome.
    work = attempts(spans, "traced_work")
    assert sorted(
        (s.attributes["coremachine.task.index"], s.attributes["coremachine.task.attempt"])
        for s in work
    ) == [(0, 1), (1, 1), (1, 2), (2, 1)]
    for span in [*work, *attempts(spans, "traced_reply")]:
        assert span.kind == "consumer" and span.service == WORKER
        assert span.attributes["messaging.destination.name"] == "tasks"
        assert span.attributes["messaging.operation.type"] == "process"
        flaky_first = (
            span.attributes["coremachine.task.index"] == 1
            and span.attributes["coremachine.task.attempt"] == 1
            and span.name == "run traced_work"
        )
        assert span.attributes["coremachine.task.outcome"] == (
            "failed" if flaky_first else "succeeded"
        )
        # A message's consumer continues from the producer span that published it.
        producer = by_id[span.parent_span_id]
        assert producer.kind == "producer" and producer.service == STATE
    # The retry is published under the failed attempt.
    [failed] = [s for s in work if s.attributes["coremachine.task.outcome"] == "failed"]
    [retry] = [s for s in work if s.attributes["coremachine.task.attempt"] == 2]
    assert by_id[retry.parent_span_id].parent_span_id == failed.span_id

    # Handlers' own spans nest under their attempt's span (async and sync handlers).
    for handler, task_type in (("handler work", "traced_work"), ("handler reply", "traced_reply")):
        nested = [s for s in spans if s.name == handler]
        assert nested and all(by_id[s.parent_span_id].name == f"run {task_type}" for s in nested)

    # Each stage advancement links the spans of the attempts that finished its tasks.
    for stage, task_type in ((1, "traced_work"), (2, "traced_reply")):
        [advance] = [s for s in spans if s.name == f"advance stage {stage}"]
        final = {
            s.span_id
            for s in attempts(spans, task_type)
            if s.attributes["coremachine.task.outcome"] == "succeeded"
        }
        assert len(final) == 3
        assert final <= {span_id for _, span_id in advance.links}
        assert all(t == trace_id for t, _ in advance.links if _ in final)

    # Planning of each stage, in the orchestrator.
    assert {s.name for s in spans if s.service == ORCHESTRATOR} >= {"plan stage 1", "plan stage 2"}
    # Parameters are redacted: no value of them on any span.
    assert not [s for s in receiver.snapshot() if SECRET in repr(s.attributes)]


def scrape(stack: Stack) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """Every sample of every service, by (name, sorted labels)."""
    out = {}
    for service in SERVICES:
        text = httpx.get(stack.metrics_url(service), timeout=10).text
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        out[service] = samples
    return out


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_of_every_service_match_the_jobs_counts(stack, http):
    before = scrape(stack)
    job_id = submit(http, n=4, flaky=2)
    assert wait_for_job(http, job_id)["status"] == "completed"
    work = {"job_type": "traced", "task_type": "traced_work", "queue": "tasks"}
    reply = {**work, "task_type": "traced_reply"}
    expected = {
        "api_gateway": [
            ("coremachine_api_jobs_submitted_total", {"job_type": "traced", "created": "true"}, 1),
            (
                "http_server_requests_total",
                {"method": "POST", "route": "/api/jobs/submit/{job_type}", "status": "202"},
                1,
            ),
        ],
        "orchestrator": [
            ("coremachine_jobs_submitted_total", {"job_type": "traced", "created": "true"}, 1),
            ("coremachine_stage_plans_total", {"job_type": "traced"}, 2),
            ("coremachine_tasks_planned_total", work, 4),
            ("coremachine_tasks_planned_total", reply, 4),
        ],
        "state": [
            ("coremachine_jobs_created_total", {"job_type": "traced"}, 1),
            ("coremachine_stages_completed_total", {"job_type": "traced"}, 2),
            ("coremachine_jobs_finished_total", {"job_type": "traced", "status": "completed"}, 1),
            ("coremachine_stage_advancement_lag_seconds_count", {"job_type": "traced"}, 1),
        ],
        "worker": [
            ("coremachine_tasks_started_total", work, 5),
            ("coremachine_tasks_completed_total", work, 4),
            ("coremachine_tasks_retried_total", work, 1),
            ("coremachine_tasks_failed_total", work, 0),
            ("coremachine_tasks_started_total", reply, 4),
            ("coremachine_tasks_completed_total", reply, 4),
            ("coremachine_task_duration_seconds_count", work, 5),
            (
                "coremachine_task_queue_wait_seconds_count",
                {"task_type": "traced_reply", "queue": "tasks"},
                4,
            ),
        ],
    }

    def deltas() -> dict[str, list[tuple[str, float, float]]]:
        after = scrape(stack)
        return {
            service: [
                (
                    name,
                    value(after[service], name, **labels) - value(before[service], name, **labels),
                    n,
                )
                for name, labels, n in checks
            ]
            for service, checks in expected.items()
        }

    # The worker counts an outcome when its report returns, just after the job ends.
    deadline = time.monotonic() + 30
    while True:
        found = deltas()
        if all(got == want for checks in found.values() for _, got, want in checks):
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.2)

    after = scrape(stack)
    # gRPC server metrics, database pools and queue gauges are there too.
    assert value(
        after["state"],
        "grpc_server_handled_total",
        grpc_service="coremachine.state.v1.StateService",
        grpc_method="CompleteTasks",
        grpc_type="unary",
        grpc_code="OK",
    ) > value(
        before["state"],
        "grpc_server_handled_total",
        grpc_service="coremachine.state.v1.StateService",
        grpc_method="CompleteTasks",
        grpc_type="unary",
        grpc_code="OK",
    )
    assert value(after["state"], "coremachine_db_pool_connections_max", pool="state") >= 2
    assert ("coremachine_queue_messages", (("queue", "tasks"),)) in after["state"]
    assert value(after["worker"], "coremachine_worker_concurrency") > 0
    # Labels stay bounded: no job or task id in any label of any service.
    ids = re.compile(r"[0-9a-f]{64}")
    leaked = [
        (service, name, labels)
        for service, samples in after.items()
        for name, labels in samples
        if any(ids.search(v) for _, v in labels)
    ]
    assert not leaked, leaked[:5]


def db_task(stack: Stack, job_id: str, index: int) -> tuple[str, int]:
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT status::text, attempt FROM coremachine.tasks"
            " WHERE job_id = %s AND stage = 1 AND task_index = %s",
            (job_id, index),
        ).fetchone()
    return (row[0], row[1]) if row else ("", 0)


@pytest.mark.fault
def test_the_trace_goes_on_after_a_worker_is_killed_mid_task(stack, http, receiver):
    job_id = submit(http, n=2, slow=0, slow_seconds=60)
    deadline = time.monotonic() + 60
    while db_task(stack, job_id, 0) != ("processing", 1):
        assert time.monotonic() < deadline, db_task(stack, job_id, 0)
        time.sleep(0.05)
    stack.kill("worker")  # kill -9, mid-task
    stack.restart("worker")
    assert wait_for_job(http, job_id)["status"] == "completed"
    trace_id = trace_id_of(stack, job_id)

    def continued(spans: list[Span]) -> bool:
        mine = [s for s in spans if s.trace_id == trace_id]
        return (
            any(
                s.name == "run traced_work"
                and s.attributes.get("coremachine.task.index") == 0
                and s.attributes.get("coremachine.task.attempt") == 2
                for s in mine
            )
            and any(s.name == "advance stage 2" for s in mine)
            # Attempt 1's span died unexported with its worker: its children (the
            # handler's span) may be missing their parent, nothing else may.
            and [r.service for r in roots(mine) if r.name != "handler work"] == [GATEWAY]
        )

    receiver.wait_for(continued)
    spans = receiver.of_trace(trace_id)
    by_id = {s.span_id: s for s in spans}
    first_task = [
        s for s in attempts(spans, "traced_work") if s.attributes["coremachine.task.index"] == 0
    ]
    # Attempt 1 died unexported with its worker. On a starved machine attempt 2's
    # 3 s lease can lapse too, so a third attempt may follow: attempt 2 is the one
    # the janitor's reclaim started.
    assert 1 not in {s.attributes["coremachine.task.attempt"] for s in first_task}
    [second] = [s for s in first_task if s.attributes["coremachine.task.attempt"] == 2]
    # Its message was published by the janitor's reclaim, in the job's trace,
    # linked to the sweep that reclaimed the lease.
    publish = by_id[second.parent_span_id]
    assert publish.kind == "producer" and publish.service == STATE
    sweeps = {s.span_id for s in receiver.snapshot() if s.name == "janitor sweep"}
    assert {span_id for _, span_id in publish.links} & sweeps


def test_workers_and_why_a_job_waits_over_http_grpc_sdk_and_cli(stack, http):
    """A worker that stops heartbeating shows as lost; a job whose queue no
    live worker consumes says so, on every surface."""
    stack.kill("worker")
    try:
        job_id = submit(http, n=2, tag="why")
        deadline = time.monotonic() + 30
        while True:
            workers = http.get("/api/workers").raise_for_status().json()["workers"]
            diagnosis = http.get(f"/api/jobs/{job_id}/diagnosis").raise_for_status().json()
            codes = [r["code"] for r in diagnosis["reasons"]]
            if {w["state"] for w in workers} == {"lost"} and "queue_unserved" in codes:
                break
            assert time.monotonic() < deadline, (workers, diagnosis)
            time.sleep(0.2)
        assert diagnosis["status"] == "processing"
        assert diagnosis["current_stage"]["queued"] == 2
        assert diagnosis["unserved_queues"] == [{"queue": "tasks", "stage": 1, "tasks_waiting": 2}]
        assert "no live worker consumes" in diagnosis["summary"]

        with Client(stack.grpc_address, api_key=stack.api_keys["reader"]) as client:
            assert {w.state for w in client.workers()} == {"lost"}
            why = client.diagnose(job_id)
            assert "queue_unserved" in why.codes() and why.status.value == "processing"

        env = {**os.environ, "COREMACHINE_ADDRESS": stack.grpc_address}
        env["COREMACHINE_API_KEY"] = stack.api_keys["reader"]
        run = [sys.executable, "-m", "coremachine_sdk"]
        listed = subprocess.run([*run, "workers"], env=env, capture_output=True, text=True)
        assert listed.returncode == 0 and "lost" in listed.stdout, listed
        explained = subprocess.run([*run, "why", job_id], env=env, capture_output=True, text=True)
        assert explained.returncode == 0, explained
        assert (
            "queue_unserved" in explained.stdout and "no live worker consumes" in explained.stdout
        )
    finally:
        stack.restart("worker")
    assert wait_for_job(http, job_id)["status"] == "completed"
    diagnosis = http.get(f"/api/jobs/{job_id}/diagnosis").json()
    assert [r["code"] for r in diagnosis["reasons"]] == ["terminal"]
