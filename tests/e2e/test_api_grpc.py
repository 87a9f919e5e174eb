"""The public gRPC JobService against the real services: every RPC of the proto."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import struct_pb2

from coremachine.common.v1 import common_pb2
from coremachine.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from tests.e2e.conftest import grpc_metadata, wait_for_job
from tests.e2e.test_api_http import db_job_status, wait_until

pytestmark = pytest.mark.e2e


class Client:
    """The stub with the stack's admin key on every call."""

    def __init__(self, stub: jobs_pb2_grpc.JobServiceStub, metadata) -> None:
        self._stub = stub
        self._md = metadata

    def __getattr__(self, name: str):
        method = getattr(self._stub, name)
        return lambda request, **kw: method(request, metadata=self._md, **kw)


@pytest.fixture
def client(stack) -> Iterator[Client]:
    with grpc.insecure_channel(stack.grpc_address) as channel:
        yield Client(jobs_pb2_grpc.JobServiceStub(channel), grpc_metadata(stack))


def submit(client: Client, **params) -> jobs_pb2.SubmitJobResponse:
    struct = struct_pb2.Struct()
    struct.update(params)
    return client.SubmitJob(jobs_pb2.SubmitJobRequest(job_type="hello_world", parameters=struct))


def test_same_parameters_over_grpc_and_http_are_the_same_job(stack, client, http):
    # Struct carries numbers as doubles; n=2 must not become a different job than HTTP's n=2.
    over_grpc = submit(client, n=2, message="same job both ways")
    assert over_grpc.created
    over_http = http.post(
        "/api/jobs/submit/hello_world", json={"n": 2, "message": "same job both ways"}
    )
    assert over_http.status_code == 200 and over_http.json()["created"] is False
    assert over_http.json()["job"]["job_id"] == over_grpc.job.job_id


def test_watch_job_streams_every_event_and_ends_with_the_job(stack, client, http):
    job_id = submit(client, n=2, task_delay_ms=100, message="watch me").job.job_id
    events = [r.event for r in client.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=60)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].event_type == "job_created" and events[-1].event_type == "job_completed"
    assert events[-1].data["status"] == "completed"
    assert client.GetJob(jobs_pb2.GetJobRequest(job_id=job_id)).job.status == (
        common_pb2.JOB_STATUS_COMPLETED
    )
    cut = events[3].seq
    resumed = client.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_seq=cut), timeout=60)
    assert [r.event.seq for r in resumed] == [e.seq for e in events if e.seq > cut]


def test_watch_job_can_end_with_the_job_as_it_ended(stack, client):
    job_id = submit(client, n=2, task_delay_ms=100, message="final job").job.job_id
    request = jobs_pb2.WatchJobRequest(job_id=job_id, job_level_only=True, final_job=True)
    responses = list(client.WatchJob(request, timeout=60))
    *events, last = responses
    assert all(r.HasField("event") and not r.HasField("job") for r in events)
    assert events[-1].event.event_type == "job_completed"
    assert not last.HasField("event") and last.job.job_id == job_id
    assert last.job.status == common_pb2.JOB_STATUS_COMPLETED
    assert last.job.result.struct_value["total_tasks"] == 4
    # Watching the ended job again: its job-level events, then the job once more.
    again = list(client.WatchJob(request, timeout=60))
    assert [r.event.seq for r in again[:-1]] == [r.event.seq for r in events]
    assert again[-1].job == last.job


def test_watch_job_end_only_sends_just_the_end_and_the_job(stack, client):
    job_id = submit(client, n=3, task_delay_ms=50, message="end only").job.job_id
    request = jobs_pb2.WatchJobRequest(job_id=job_id, end_only=True, final_job=True)
    responses = list(client.WatchJob(request, timeout=60))
    assert [r.event.event_type for r in responses[:-1]] == ["job_completed"]
    assert responses[-1].job.status == common_pb2.JOB_STATUS_COMPLETED


def test_watch_job_errors(stack, client):
    with pytest.raises(grpc.RpcError) as err:
        list(client.WatchJob(jobs_pb2.WatchJobRequest(job_id="9" * 64), timeout=10))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        list(client.WatchJob(jobs_pb2.WatchJobRequest(job_id="short"), timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_list_jobs_and_tasks_paginate(stack, client, http):
    ids = [submit(client, n=2, message=f"grpc list {i}").job.job_id for i in range(3)]
    for job_id in ids:
        wait_for_job(http, job_id)
    seen: list[str] = []
    token = ""
    while True:
        page = client.ListJobs(
            jobs_pb2.ListJobsRequest(
                status=common_pb2.JOB_STATUS_COMPLETED, limit=2, page_token=token
            )
        )
        assert len(page.jobs) <= 2
        seen += [j.job_id for j in page.jobs]
        token = page.next_page_token
        if not token:
            break
    assert set(ids) <= set(seen) and len(seen) == len(set(seen))

    tasks = client.ListTasks(jobs_pb2.ListTasksRequest(job_id=ids[0])).tasks
    assert [(t.stage, t.task_index) for t in tasks] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert all(t.status == common_pb2.TASK_STATUS_COMPLETED for t in tasks)
    assert tasks[2].result.struct_value["reply"]
    stage2 = client.ListTasks(jobs_pb2.ListTasksRequest(job_id=ids[0], stage=2, limit=1))
    assert len(stage2.tasks) == 1 and stage2.next_page_token
    with pytest.raises(grpc.RpcError) as err:
        client.ListTasks(jobs_pb2.ListTasksRequest(job_id="1" * 64))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_cancel_then_resubmit(stack, client, http):
    job_id = submit(client, n=3, task_delay_ms=400, message="grpc cancel").job.job_id
    wait_until(lambda: db_job_status(stack, job_id) == "processing", "the job to start")
    cancelled = client.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id)).job
    assert cancelled.status == common_pb2.JOB_STATUS_CANCELLED
    assert db_job_status(stack, job_id) == "cancelled"
    resubmitted = client.ResubmitJob(jobs_pb2.ResubmitJobRequest(job_id=job_id))
    assert resubmitted.job.status != common_pb2.JOB_STATUS_CANCELLED
    assert wait_for_job(http, job_id)["status"] == "completed"
    with pytest.raises(grpc.RpcError) as err:
        client.ResubmitJob(jobs_pb2.ResubmitJobRequest(job_id=job_id))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as err:
        client.CancelJob(jobs_pb2.CancelJobRequest(job_id="2" * 64))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_job_types_carries_parameter_schemas(stack, client):
    types = {t.job_type: t for t in client.ListJobTypes(jobs_pb2.ListJobTypesRequest()).job_types}
    hello = types["hello_world"]
    assert hello.description and len(hello.stages) == 2
    assert "n" in hello.parameters_schema["properties"]


def test_submit_limits(stack, client):
    deep: dict = {}
    for _ in range(25):
        deep = {"x": deep}
    with pytest.raises(grpc.RpcError) as err:
        submit(client, n=1, deep=deep)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "deeper than 20" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        client.ListJobs(jobs_pb2.ListJobsRequest(limit=-1))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
