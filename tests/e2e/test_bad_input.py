"""Bad input is refused with a clear error naming the field, and changes nothing."""

from __future__ import annotations

import grpc
import psycopg
import pytest
from google.protobuf import struct_pb2

from coremachine.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from tests.e2e.conftest import grpc_metadata

pytestmark = pytest.mark.e2e


def job_count(stack) -> int:
    with psycopg.connect(stack.database_url) as conn:
        return conn.execute("SELECT count(*) FROM coremachine.jobs").fetchone()[0]


def test_unknown_job_type_lists_known_types(stack, http):
    before = job_count(stack)
    r = http.post("/api/jobs/submit/no_such_job", json={})
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "InvalidArgument"
    assert "hello_world" in body["message"] and "no_such_job" in body["message"]
    assert body["request_id"] and r.headers["X-Request-ID"] == body["request_id"]
    assert job_count(stack) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"n": 0}, "n"),
        ({"n": 10_000_000}, "n"),
        ({"n": "many"}, "n"),
        ({"n": 3, "failure_rate": 2}, "failure_rate"),
        ({"n": 3, "bogus": 1}, "bogus"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(stack, http, body, field):
    before = job_count(stack)
    r = http.post("/api/jobs/submit/hello_world", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith(f"{field}:")
    assert job_count(stack) == before


def test_malformed_json_is_400(stack, http):
    r = http.post(
        "/api/jobs/submit/hello_world",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    r = http.post("/api/jobs/submit/hello_world", json=[1, 2])
    assert r.status_code == 400 and "object" in r.json()["message"]


def test_unknown_job_id_is_404_and_malformed_id_is_400(stack, http):
    r = http.get(f"/api/jobs/status/{'0' * 64}")
    assert r.status_code == 404 and r.json()["error"] == "NotFound"
    r = http.get("/api/jobs/status/not-a-job-id")
    assert r.status_code == 400 and "job_id" in r.json()["message"]


def test_wrong_method_is_405(stack, http):
    r = http.delete("/api/jobs/submit/hello_world")
    assert r.status_code == 405 and r.json()["error"] == "MethodNotAllowed"


def test_grpc_errors(stack):
    with grpc.insecure_channel(stack.grpc_address) as channel:
        client = jobs_pb2_grpc.JobServiceStub(channel)
        md = grpc_metadata(stack)
        with pytest.raises(grpc.RpcError) as err:
            client.SubmitJob(jobs_pb2.SubmitJobRequest(job_type="no_such_job"), metadata=md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "hello_world" in err.value.details()
        params = struct_pb2.Struct()
        params.update({"n": -1})
        with pytest.raises(grpc.RpcError) as err:
            client.SubmitJob(
                jobs_pb2.SubmitJobRequest(job_type="hello_world", parameters=params), metadata=md
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("n:")
        with pytest.raises(grpc.RpcError) as err:
            client.GetJob(jobs_pb2.GetJobRequest(job_id="f" * 64), metadata=md)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_reports_each_service(stack, http):
    r = http.get("/api/health")
    assert r.status_code == 200
    assert r.json()["components"]["services"] == {
        "state": "serving",
        "orchestrator": "serving",
        "worker": "serving",
    }


def test_nul_characters_are_refused_naming_the_field(stack, http):
    # PostgreSQL cannot store U+0000 in text or jsonb: a 400, never a 5xx.
    before = job_count(stack)
    r = http.post("/api/jobs/submit/hello_world", json={"n": 1, "message": "a\x00b"})
    assert r.status_code == 400 and r.json()["message"].startswith("message:")
    r = http.get("/api/db/jobs", params={"job_type": "a\x00b"})
    assert r.status_code == 400 and r.json()["message"].startswith("job_type:")
    params = struct_pb2.Struct()
    params.update({"n": 1, "message": "bad\x00"})
    with grpc.insecure_channel(stack.grpc_address) as channel:
        client = jobs_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            client.SubmitJob(
                jobs_pb2.SubmitJobRequest(job_type="hello_world", parameters=params),
                metadata=grpc_metadata(stack),
            )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("message:")
    assert job_count(stack) == before


def test_a_value_postgresql_refuses_is_invalid_argument_not_internal(stack):
    from coremachine.state.v1 import state_pb2, state_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{stack.ports.state}") as channel:
        state = state_pb2_grpc.StateServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            state.ListJobs(state_pb2.ListJobsRequest(job_type="a\x00b"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "NUL" in err.value.details()
