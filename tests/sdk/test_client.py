"""The blocking Client against the fake gateway: typed results, errors, paging, watch, wait."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime
from typing import Any

import pytest
from google.protobuf.message import Message

from coremachine.common.v1 import common_pb2
from coremachine_sdk import (
    Client,
    Conflict,
    InvalidParameters,
    Job,
    JobEvent,
    JobNotFound,
    JobStatus,
    PermissionDenied,
    Task,
    TaskStatus,
    Timeout,
    Unauthorized,
    Unavailable,
)
from tests.sdk.fake_gateway import FakeGateway

JS = common_pb2.JobStatus


def assert_no_protobuf(value: Any) -> None:
    """Users never see protobuf: walk a result and reject any message or container."""
    assert not isinstance(value, Message), value
    assert type(value).__module__.split(".")[0] not in {"google", "coremachine"}, type(value)
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            assert_no_protobuf(getattr(value, f.name))
    elif isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str)
            assert_no_protobuf(v)
    elif isinstance(value, list | tuple):
        for v in value:
            assert_no_protobuf(v)


@pytest.fixture
def client(gateway: FakeGateway):
    with Client(gateway.address, api_key="secret") as client:
        yield client


def test_submit_returns_a_typed_job_and_sends_the_api_key(gateway: FakeGateway, client: Client):
    job = client.submit("hello_world", n=3, message="hi")

    assert isinstance(job, Job)
    assert job.status is JobStatus.QUEUED and job.status == "queued"
    assert len(job.job_id) == 64 and job.job_type == "hello_world"
    # Struct carries doubles; the SDK gives back the integer the user sent.
    assert job.parameters == {"n": 3, "message": "hi"}
    assert type(job.parameters["n"]) is int
    assert isinstance(job.created_at, datetime) and job.created_at.tzinfo is not None
    assert job.stages[0].task_count == 3 and job.stages[0].done == 0
    assert_no_protobuf(job)
    method, metadata = gateway.call(lambda s: s.calls[-1], gateway.service)
    assert method == "SubmitJob" and metadata["authorization"] == "Bearer secret"


def test_get_of_a_finished_job_has_its_result(gateway: FakeGateway, client: Client):
    job = client.submit("hello_world", n=2)
    gateway.call(gateway.service.finish, job.job_id)

    done = client.get(job.job_id)

    assert done.status is JobStatus.COMPLETED and done.is_terminal
    assert done.result == {"greetings": 2, "ratio": 0.5}
    assert done.completed_at is not None and done.error is None
    assert_no_protobuf(done)


def test_errors_are_typed_exceptions(gateway: FakeGateway, client: Client):
    with pytest.raises(JobNotFound) as not_found:
        client.get("0" * 64)
    assert not_found.value.code == "NOT_FOUND"

    with pytest.raises(InvalidParameters) as bad_n:
        client.submit("hello_world", n=0)
    assert bad_n.value.field == "n"  # from the "field: message" prefix

    with pytest.raises(InvalidParameters) as bad_type:
        client.submit("nope")
    assert bad_type.value.field == "job_type"  # from the trailing metadata

    job = client.submit("hello_world", n=1)
    gateway.call(gateway.service.finish, job.job_id)
    with pytest.raises(Conflict):
        client.cancel(job.job_id)


def test_auth_errors(gateway: FakeGateway):
    gateway.call(setattr, gateway.service, "api_key", "right")
    with Client(gateway.address, api_key="wrong") as client, pytest.raises(Unauthorized):
        client.submit("hello_world", n=1)
    gateway.call(gateway.service.admin_only.add, "CancelJob")
    with Client(gateway.address, api_key="right") as client:
        job = client.submit("hello_world", n=1)
        with pytest.raises(PermissionDenied):
            client.cancel(job.job_id)


def test_an_unreachable_gateway_is_unavailable():
    with Client("127.0.0.1:1", timeout=5) as client, pytest.raises(Unavailable):
        client.get("0" * 64)


def test_list_jobs_follows_pages_and_honours_filters_and_limit(
    gateway: FakeGateway, client: Client
):
    ids = {client.submit("hello_world", n=n).job_id for n in range(1, 8)}
    gateway.call(gateway.service.finish, sorted(ids)[0])

    listed = list(client.list_jobs())  # the fake serves pages of 3: three round trips
    assert {j.job_id for j in listed} == ids
    assert all(isinstance(j, Job) for j in listed)
    assert [c for c, _ in gateway.call(lambda s: list(s.calls), gateway.service)].count(
        "ListJobs"
    ) == 3

    assert len(list(client.list_jobs(limit=5))) == 5
    completed = list(client.list_jobs(status=JobStatus.COMPLETED))
    assert [j.job_id for j in completed] == [sorted(ids)[0]]
    assert list(client.list_jobs(status="queued", job_type="other")) == []
    with pytest.raises(InvalidParameters):
        list(client.list_jobs(status="bogus"))


def test_list_tasks_pages_and_filters(gateway: FakeGateway, client: Client):
    job = client.submit("hello_world", n=5)

    tasks = list(client.list_tasks(job.job_id))
    assert [t.task_index for t in tasks] == [0, 1, 2, 3, 4]
    assert all(isinstance(t, Task) and t.status is TaskStatus.QUEUED for t in tasks)
    assert_no_protobuf(tasks)
    assert list(client.list_tasks(job.job_id, stage=2)) == []
    assert list(client.list_tasks(job.job_id, status="completed")) == []
    assert len(list(client.list_tasks(job.job_id, limit=4))) == 4


def test_cancel_and_resubmit_return_jobs(gateway: FakeGateway, client: Client):
    job = client.submit("hello_world", n=2)
    cancelled = client.cancel(job.job_id)
    assert cancelled.status is JobStatus.CANCELLED

    again = client.resubmit(job.job_id)
    assert again.status is JobStatus.PROCESSING


def test_job_types(client: Client):
    (hello,) = client.job_types()
    assert hello.job_type == "hello_world" and hello.stages == ("greet", "reply")
    assert hello.parameters_schema["properties"]["n"] == {"type": "integer"}
    assert_no_protobuf(hello)


def test_watch_yields_events_until_the_job_ends(gateway: FakeGateway, client: Client):
    job = client.submit("hello_world", n=2)
    gateway.call(gateway.service.add_event, job.job_id, "stage_started", 1, {"task_count": 2})
    gateway.call(gateway.service.finish, job.job_id)

    events = list(client.watch(job.job_id))

    assert [e.event_type for e in events] == ["job_created", "stage_started", "job_completed"]
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[1].data == {"task_count": 2} and events[1].stage == 1
    assert all(isinstance(e, JobEvent) for e in events)
    assert_no_protobuf(events)
    assert [e.seq for e in client.watch(job.job_id, after_seq=2)] == [3]


def test_watch_resumes_after_the_last_seen_event_when_the_stream_breaks(
    gateway: FakeGateway, client: Client
):
    job = client.submit("hello_world", n=2)
    for i in range(3):
        gateway.call(gateway.service.add_event, job.job_id, "stage_started", i + 1, {})
    gateway.call(gateway.service.finish, job.job_id)
    gateway.call(setattr, gateway.service, "break_watch_after", 2)

    seqs = [e.seq for e in client.watch(job.job_id)]

    assert seqs == [1, 2, 3, 4, 5]  # nothing lost, nothing repeated
    assert gateway.call(lambda s: list(s.watch_requests), gateway.service) == [0, 2]


def test_a_quiet_stream_that_breaks_is_resumed_however_long_it_was_quiet(
    gateway: FakeGateway, client: Client, monkeypatch: pytest.MonkeyPatch
):
    # wait() streams only the job's end: a long job is a long quiet stream.
    # Each break of a stream that worked for a while is a new outage, not the
    # continuation of one that started when the last event came.
    monkeypatch.setattr("coremachine_sdk._async_client._WORKING_STREAM_SECONDS", 0.5)
    job = client.submit("hello_world", n=2)
    gateway.call(setattr, gateway.service, "quiet_seconds", 1.0)
    gateway.call(setattr, gateway.service, "break_quiet_watches", 2)

    def finish_after_two_breaks() -> None:
        gateway.wait_until(lambda s: s.break_quiet_watches == 0)
        gateway.call(gateway.service.finish, job.job_id)

    finisher = threading.Thread(target=finish_after_two_breaks)
    finisher.start()
    events = list(client.watch(job.job_id, reconnect_for=0.3))
    finisher.join()
    assert [e.event_type for e in events] == ["job_created", "job_completed"]
    assert len(gateway.call(lambda s: list(s.watch_requests), gateway.service)) == 3


def test_watch_follows_a_live_job(gateway: FakeGateway, client: Client):
    job = client.submit("hello_world", n=2)
    seen: list[str] = []

    def finish_once_watching() -> None:
        gateway.wait_until(lambda s: bool(s.watch_requests))
        gateway.call(gateway.service.finish, job.job_id)

    finisher = threading.Thread(target=finish_once_watching)
    finisher.start()
    for event in client.watch(job.job_id):
        seen.append(event.event_type)
    finisher.join()
    assert seen == ["job_created", "job_completed"]


def test_wait_returns_the_final_job(gateway: FakeGateway, client: Client):
    job = client.submit("hello_world", n=2)

    def finish_once_waiting() -> None:
        gateway.wait_until(lambda s: bool(s.watch_requests))
        gateway.call(gateway.service.finish, job.job_id, JS.JOB_STATUS_FAILED)

    finisher = threading.Thread(target=finish_once_waiting)
    finisher.start()
    final = client.wait(job.job_id, timeout=10)
    finisher.join()
    assert final.status is JobStatus.FAILED and final.error == "task greet[1] failed: boom"


def test_wait_takes_the_job_from_the_end_of_the_stream(gateway: FakeGateway, client: Client):
    job = client.submit("hello_world", n=2)

    def finish_once_waiting() -> None:
        gateway.wait_until(lambda s: bool(s.watch_requests))
        gateway.call(gateway.service.finish, job.job_id)

    finisher = threading.Thread(target=finish_once_waiting)
    finisher.start()
    final = client.wait(job.job_id, timeout=10)
    finisher.join()
    assert final.status is JobStatus.COMPLETED
    # The stream's final message carried the job: no GetJob before or after.
    calls = gateway.call(lambda s: [c for c, _ in s.calls], gateway.service)
    assert "GetJob" not in calls and "WatchJob" in calls


def test_wait_polls_when_the_gateway_cannot_watch(gateway: FakeGateway, client: Client):
    gateway.call(gateway.service.unimplemented.add, "WatchJob")
    job = client.submit("hello_world", n=2)

    def finish_once_polled() -> None:
        gateway.wait_until(lambda s: [c for c, _ in s.calls].count("GetJob") >= 2)
        gateway.call(gateway.service.finish, job.job_id)

    finisher = threading.Thread(target=finish_once_polled)
    finisher.start()
    assert client.wait(job.job_id, timeout=10).status is JobStatus.COMPLETED
    finisher.join()


def test_wait_raises_timeout(client: Client):
    job = client.submit("hello_world", n=2)
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"still queued after 0\.3s"):
        client.wait(job.job_id, timeout=0.3)
    assert time.monotonic() - started < 5
    with pytest.raises(TimeoutError):  # also a built-in TimeoutError
        client.wait(job.job_id, timeout=0.1)


def test_breaking_out_of_an_iterator_closes_the_stream(gateway: FakeGateway, client: Client):
    job = client.submit("hello_world", n=2)
    for _event in client.watch(job.job_id):
        break  # the job never ends: leaving the loop must not hang
    assert client.get(job.job_id).status is JobStatus.QUEUED
