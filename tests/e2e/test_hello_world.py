"""hello_world end to end: four service processes, real gRPC, real PostgreSQL."""

from __future__ import annotations

import grpc
import psycopg
import pytest
from google.protobuf import struct_pb2

from coremachine.common.v1 import common_pb2
from coremachine.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from tests.e2e.conftest import grpc_metadata, wait_for_job

pytestmark = pytest.mark.e2e


def task_rows(database_url: str, job_id: str) -> list[tuple]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT stage, task_index, status::text, attempt, result_data"
            " FROM coremachine.tasks WHERE job_id = %s ORDER BY stage, task_index",
            (job_id,),
        ).fetchall()


def check_hello_world(stack, job: dict, n: int, message: str) -> None:
    assert job["status"] == "completed", job
    result = job["result"]
    assert result["job_type"] == "hello_world"
    assert result["total_tasks"] == 2 * n
    assert result["stages"]["1"]["completed"] == n and result["stages"]["2"]["completed"] == n
    # Reply i answers greeting i (the reference replied to "unknown").
    assert result["replies"] == [f"Replying to: {message} from task {i}!" for i in range(n)]
    rows = task_rows(stack.database_url, job["job_id"])
    assert len(rows) == 2 * n
    assert [(r[0], r[1]) for r in rows] == [(s, i) for s in (1, 2) for i in range(n)]
    assert {r[2] for r in rows} == {"completed"}
    for stage, index, _status, _attempt, result_data in rows:
        key = "greeting" if stage == 1 else "reply"
        assert result_data["task_index"] == index and key in result_data
    assert [s["status"] for s in job["stages"]] == ["completed", "completed"]
    assert job["stage"] == 2 and job["total_stages"] == 2


@pytest.mark.parametrize("n", [3, 100])
def test_hello_world_over_http(stack, http, n):
    message = f"Hi over HTTP {n}"
    response = http.post("/api/jobs/submit/hello_world", json={"n": n, "message": message})
    assert response.status_code == 202, response.text
    assert response.json()["created"] is True
    job = wait_for_job(http, response.json()["job"]["job_id"])
    check_hello_world(stack, job, n, message)


@pytest.mark.parametrize("n", [3, 100])
def test_hello_world_over_grpc(stack, http, n):
    message = f"Hi over gRPC {n}"
    params = struct_pb2.Struct()
    params.update({"n": n, "message": message})
    with grpc.insecure_channel(stack.grpc_address) as channel:
        client = jobs_pb2_grpc.JobServiceStub(channel)
        submitted = client.SubmitJob(
            jobs_pb2.SubmitJobRequest(job_type="hello_world", parameters=params),
            metadata=grpc_metadata(stack),
        )
        assert submitted.created
        job_id = submitted.job.job_id
        wait_for_job(http, job_id)
        job = client.GetJob(
            jobs_pb2.GetJobRequest(job_id=job_id), metadata=grpc_metadata(stack)
        ).job
        assert job.status == common_pb2.JOB_STATUS_COMPLETED
        assert len(job.result.struct_value["replies"]) == n
        assert [s.completed for s in job.stages] == [n, n]
    check_hello_world(stack, wait_for_job(http, job_id), n, message)


def test_resubmitting_same_parameters_returns_same_job_without_rerunning(stack, http):
    body = {"n": 5, "message": "only once"}
    first = http.post("/api/jobs/submit/hello_world", json=body)
    job_id = first.json()["job"]["job_id"]
    wait_for_job(http, job_id)
    again = http.post("/api/jobs/submit/hello_world", json=body)
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert again.json()["job"]["job_id"] == job_id
    assert again.json()["job"]["status"] == "completed"
    rows = task_rows(stack.database_url, job_id)
    assert len(rows) == 10 and all(r[3] == 1 for r in rows)  # every task ran once


def test_status_is_a_plain_string(stack, http):
    job_id = http.post("/api/jobs/submit/hello_world", json={"n": 1}).json()["job"]["job_id"]
    status = wait_for_job(http, job_id)["status"]
    assert status == "completed" and "JobStatus" not in status
