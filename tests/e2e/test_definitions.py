"""Rolling deploys: two orchestrators serving two versions of one job type.

A job keeps the definition it was created with. Its stages are only planned
by an orchestrator serving that definition; while none runs, the job waits
with a reason that names the definition, and goes on when one is back (a
change of planning or handler code alone keeps the definition) or when an
operator moves it onto the current one.
"""

from __future__ import annotations

import json
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest

from coremachine.orchestrator.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from coremachine.stack.processes import Ports, Stack
from coremachine.testing._stack import FAST_ENV
from tests.databases import drop_database
from tests.e2e.conftest import auth_headers, make_stack, wait_for_job

pytestmark = pytest.mark.e2e

COMMON = """
from pydantic import BaseModel, Field
from coremachine.app import App, FromParameter, MatchPrevious, Stage


class ReportParams(BaseModel):
    n: int = Field(2, ge=1, le=100)
    delay: float = Field(0.0, ge=0, le=30)
    tag: str = ""
"""
# v1, and v1b: the same definition with other planning code (same fingerprint).
V1 = (
    COMMON
    + """
app = App("report-v1")
app.declare_task("step_one")
app.declare_task("step_v1")
app.job("report", parameters=ReportParams, stages=[
    Stage("first", "step_one",
          FromParameter("n", lambda ctx, i: {"i": i, "delay": ctx.parameters["delay"]})),
    Stage("second", "step_v1", MatchPrevious()),
])
"""
)
V1B = (
    COMMON
    + """
app = App("report-v1b")
app.declare_task("step_one")
app.declare_task("step_v1")


def first_params(ctx, i):
    # Rewritten, same outcome: planning code is not part of the definition.
    return dict(delay=ctx.parameters["delay"], i=i)


app.job("report", parameters=ReportParams, stages=[
    Stage("first", "step_one", FromParameter("n", first_params)),
    Stage("second", "step_v1", MatchPrevious()),
])
"""
)
V2 = (
    COMMON
    + """
app = App("report-v2")
app.declare_task("step_one")
app.declare_task("step_v2")
app.job("report", parameters=ReportParams, stages=[
    Stage("first", "step_one",
          FromParameter("n", lambda ctx, i: {"i": i, "delay": ctx.parameters["delay"]})),
    Stage("second", "step_v2", MatchPrevious()),
])
"""
)
HANDLERS = """
import asyncio
from coremachine.app import App

app = App("report-handlers")


@app.task
async def step_one(params):
    await asyncio.sleep(params["delay"])
    return {"i": params["i"]}


@app.task
def step_v1(params):
    return "v1"


@app.task
def step_v2(params):
    return "v2"
"""


@pytest.fixture(scope="module")
def modules(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("definitions")
    for name, code in {
        "report_v1": V1,
        "report_v1b": V1B,
        "report_v2": V2,
        "report_handlers": HANDLERS,
    }.items():
        (where / f"{name}.py").write_text(textwrap.dedent(code))
    return where


@pytest.fixture(scope="module")
def stack(admin_url, modules, tmp_path_factory) -> Iterator[Stack]:
    stack, url = make_stack(
        admin_url,
        tmp_path_factory.mktemp("definitions-stack"),
        extra_env={**FAST_ENV, "PYTHONPATH": str(modules)},
        service_env={
            "orchestrator": {"COREMACHINE_APPS": "report_v1:app"},
            "worker": {"COREMACHINE_APPS": "report_handlers:app"},
        },
    )
    stack.up()
    yield stack
    stack.stop()
    drop_database(admin_url, url)


def swap_orchestrator(stack: Stack, apps: str) -> None:
    """Stops the stack's orchestrator (SIGTERM: it unregisters) and starts one serving `apps`."""
    proc = stack.procs["orchestrator"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    stack.service_env["orchestrator"] = {"COREMACHINE_APPS": apps}
    stack.restart("orchestrator")


def another_orchestrator(stack: Stack, apps: str, modules: Path, log_dir: Path) -> Stack:
    """A second orchestrator process on the same state service and database."""
    other = Stack(
        stack.database_url,
        Ports.free(),
        log_dir=log_dir,
        extra_env={
            **FAST_ENV,
            "PYTHONPATH": str(modules),
            "COREMACHINE_APPS": apps,
            "STATE_ADDRESS": f"127.0.0.1:{stack.ports.state}",
        },
    )
    other.start("orchestrator")
    other.wait_serving("orchestrator")
    return other


def submit_to(orchestrator_port: int, **parameters) -> str:
    """SubmitJob on one orchestrator (the gateway talks to one; this picks which)."""
    with grpc.insecure_channel(f"127.0.0.1:{orchestrator_port}") as channel:
        response = orchestrator_pb2_grpc.OrchestratorServiceStub(channel).SubmitJob(
            orchestrator_pb2.SubmitJobRequest(
                job_type="report", parameters_json=json.dumps(parameters).encode()
            ),
            timeout=30,
        )
    return response.job.job_id


def second_stage_ran(stack: Stack, job_id: str) -> set[str]:
    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT task_type FROM coremachine.tasks WHERE job_id = %s AND stage = 2",
            (job_id,),
        ).fetchall()
    return {r[0] for r in rows}


def definition_of(http: httpx.Client) -> str:
    [report] = [
        t for t in http.get("/api/job-types").json()["job_types"] if t["job_type"] == "report"
    ]
    return report["fingerprint"]


def wait_for(http: httpx.Client, job_id: str, predicate, what: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/api/jobs/status/{job_id}").raise_for_status().json()
        if predicate(job):
            return job
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {job}"
        time.sleep(0.05)


def test_a_job_waits_for_its_definition_and_goes_on_when_it_is_served_again(
    stack, modules, tmp_path
):
    with httpx.Client(
        base_url=stack.http_url, headers=auth_headers(stack.api_key), timeout=30
    ) as http:
        v1 = definition_of(http)
        job_id = http.post(
            "/api/jobs/submit/report", json={"n": 3, "delay": 2, "tag": "started on v1"}
        ).json()["job"]["job_id"]
        assert http.get(f"/api/jobs/status/{job_id}").json()["definition"] == v1
        # A deploy replaces the orchestrator while stage 1 runs.
        swap_orchestrator(stack, "report_v2:app")
        v2 = definition_of(http)
        assert v2 != v1
        waiting = wait_for(http, job_id, lambda j: j["waiting"], "the job to wait")
        assert f"report@{v1[:12]}" in waiting["waiting"] and waiting["status"] == "processing"
        # New jobs run on the new definition meanwhile.
        fresh = http.post("/api/jobs/submit/report", json={"n": 2, "tag": "v2"}).json()["job"]
        assert fresh["definition"] == v2
        assert wait_for_job(http, fresh["job_id"])["status"] == "completed"
        assert second_stage_ran(stack, fresh["job_id"]) == {"step_v2"}
        assert second_stage_ran(stack, job_id) == set()  # never planned by v2
        # v1 comes back with other planning code but the same definition.
        other = another_orchestrator(stack, "report_v1b:app", modules, tmp_path / "v1b")
        try:
            done = wait_for_job(http, job_id)
            assert done["status"] == "completed" and done["waiting"] is None
            assert second_stage_ran(stack, job_id) == {"step_v1"}

            # Both versions running: each job's stages planned by its own.
            v1_jobs = [submit_to(other.ports.orchestrator, n=2, tag=f"v1-{i}") for i in range(4)]
            v2_jobs = [submit_to(stack.ports.orchestrator, n=2, tag=f"v2-{i}") for i in range(4)]
            for job in v1_jobs + v2_jobs:
                assert wait_for_job(http, job)["status"] == "completed"
            assert all(second_stage_ran(stack, j) == {"step_v1"} for j in v1_jobs)
            assert all(second_stage_ran(stack, j) == {"step_v2"} for j in v2_jobs)
        finally:
            other.stop()


def test_an_operator_moves_a_waiting_job_onto_the_current_definition(stack, modules, tmp_path):
    with httpx.Client(
        base_url=stack.http_url, headers=auth_headers(stack.api_key), timeout=30
    ) as http:
        if stack.service_env["orchestrator"]["COREMACHINE_APPS"] != "report_v2:app":
            swap_orchestrator(stack, "report_v2:app")
        current = definition_of(http)
        other = another_orchestrator(stack, "report_v1:app", modules, tmp_path / "v1")
        try:
            job_id = submit_to(other.ports.orchestrator, n=2, delay=2, tag="to rebase")
        finally:
            other.stop()  # its definition is served by no one now
        job = wait_for(http, job_id, lambda j: j["waiting"], "the job to wait")
        assert job["definition"] != current
        moved = http.post(f"/api/jobs/{job_id}/resubmit", params={"current_definition": "true"})
        assert moved.status_code == 200, moved.text
        assert moved.json()["job"]["definition"] == current
        done = wait_for_job(http, job_id)
        assert done["status"] == "completed" and done["definition"] == current
        assert second_stage_ran(stack, job_id) == {"step_v2"}
