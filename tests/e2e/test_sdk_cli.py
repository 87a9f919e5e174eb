"""The SDK and the `coremachine` CLI against the four services as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from coremachine.stack.processes import Stack
from coremachine_sdk import (
    AsyncClient,
    Client,
    InvalidParameters,
    JobNotFound,
    JobStatus,
    PermissionDenied,
    TaskStatus,
    Unauthorized,
)

pytestmark = pytest.mark.e2e

UNKNOWN_JOB = "0" * 64


@pytest.fixture
def client(stack: Stack):
    with Client(stack.grpc_address, api_key=stack.api_key) as client:
        yield client


def cli(stack: Stack, *argv: str, api_key: str | None = None, timeout: float = 180):
    """Runs `coremachine` as a subprocess, configured through its environment variables."""
    env = {
        **os.environ,
        "COREMACHINE_ADDRESS": stack.grpc_address,
        "COREMACHINE_HTTP": stack.http_url,
        "COREMACHINE_API_KEY": api_key if api_key is not None else stack.api_key,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "coremachine_sdk", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sdk_submits_waits_and_inspects_hello_world(client: Client) -> None:
    job = client.submit("hello_world", n=5, message="Hi from the SDK")
    assert job.job_type == "hello_world" and job.parameters["n"] == 5

    done = client.wait(job.job_id, timeout=120)

    assert done.status is JobStatus.COMPLETED, done
    assert done.result["total_tasks"] == 10
    assert done.result["replies"][0] == "Replying to: Hi from the SDK from task 0!"
    assert [s.status for s in done.stages] == ["completed", "completed"]
    assert [(s.task_count, s.done) for s in done.stages] == [(5, 5), (5, 5)]
    assert [s.queue for s in done.stages] == ["tasks", "tasks"] and done.waiting is None
    [hello] = [t for t in client.job_types() if t.job_type == "hello_world"]
    assert done.definition == hello.fingerprint and len(done.definition) == 64
    assert [s["task_type"] for s in hello.stage_info] == [
        "hello_world_greeting",
        "hello_world_reply",
    ]
    assert client.get(job.job_id) == done

    tasks = list(client.list_tasks(job.job_id))
    assert [(t.stage, t.task_index) for t in tasks] == [(s, i) for s in (1, 2) for i in range(5)]
    assert {t.status for t in tasks} == {TaskStatus.COMPLETED}
    assert len(list(client.list_tasks(job.job_id, stage=2, status="completed"))) == 5
    assert list(client.list_tasks(job.job_id, status=TaskStatus.FAILED)) == []

    listed = list(client.list_jobs(job_type="hello_world", status="completed", limit=50))
    assert job.job_id in {j.job_id for j in listed}

    events = list(client.watch(job.job_id))
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, len(events) + 1))  # gap-free, from the start
    assert events[0].event_type == "job_created" and events[-1].event_type == "job_completed"
    assert [e.seq for e in client.watch(job.job_id, after_seq=seqs[-2])] == [seqs[-1]]

    assert "hello_world" in {t.job_type for t in client.job_types()}
    # Same type and parameters: the same job, not run again.
    assert client.submit("hello_world", n=5, message="Hi from the SDK").job_id == job.job_id


async def test_async_client_submits_and_watches(stack: Stack) -> None:
    async with AsyncClient(stack.grpc_address, api_key=stack.api_key) as client:
        job = await client.submit("hello_world", n=4, message="async")
        events = [e.event_type async for e in client.watch(job.job_id)]
        assert events[-1] == "job_completed"
        final = await client.wait(job.job_id, timeout=60)
        assert final.status is JobStatus.COMPLETED and final.result["total_tasks"] == 8


def test_errors_arrive_as_typed_exceptions(stack: Stack, client: Client) -> None:
    with pytest.raises(JobNotFound):
        client.get(UNKNOWN_JOB)
    with pytest.raises(InvalidParameters) as bad:
        client.submit("hello_world", n=0)
    assert bad.value.field == "n"
    with pytest.raises(InvalidParameters):
        client.submit("no_such_job_type")
    with Client(stack.grpc_address, api_key="not-a-key") as stranger, pytest.raises(Unauthorized):
        stranger.get(UNKNOWN_JOB)
    reader = Client(stack.grpc_address, api_key=stack.api_keys["reader"])
    with reader, pytest.raises(PermissionDenied):
        reader.submit("hello_world", n=1, message="a reader may not submit")


def test_cancel_then_resubmit(client: Client) -> None:
    # Slow tasks, so that the job is still running when it is cancelled.
    job = client.submit("hello_world", n=20, message="cancel me", task_delay_ms=500)
    cancelled = client.cancel(job.job_id)
    assert client.wait(job.job_id, timeout=60).status is JobStatus.CANCELLED, cancelled

    again = client.resubmit(job.job_id)
    assert again.status in {JobStatus.QUEUED, JobStatus.PROCESSING}
    assert client.wait(job.job_id, timeout=120).status is JobStatus.COMPLETED


def test_cli_submit_wait_and_inspect(stack: Stack) -> None:
    submitted = cli(stack, "submit", "hello_world", "n=6", "message=cli", "--wait", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["status"] == "completed" and job["parameters"]["n"] == 6
    job_id = job["job_id"]

    status = cli(stack, "status", job_id)
    assert status.returncode == 0 and "completed" in status.stdout and job_id in status.stdout

    tasks = cli(stack, "tasks", job_id, "--stage", "2", "--json")
    assert tasks.returncode == 0, tasks.stderr
    assert [t["task_index"] for t in json.loads(tasks.stdout)] == list(range(6))

    jobs = cli(stack, "jobs", "--type", "hello_world", "--status", "completed", "--limit", "100")
    assert jobs.returncode == 0 and job_id[:16] in jobs.stdout

    watched = cli(stack, "watch", job_id, "--json")
    assert watched.returncode == 0, watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert events[-1]["event_type"] == "job_completed"

    poison = cli(stack, "poison", "--json")
    assert poison.returncode == 0, poison.stderr
    assert isinstance(json.loads(poison.stdout), dict)


def test_cli_progress_bars_and_exit_codes(stack: Stack) -> None:
    shown = cli(stack, "submit", "hello_world", "n=8", "message=bars", "--wait")
    assert shown.returncode == 0, shown.stderr
    assert "stage 2/2" in shown.stderr  # the progress bar of the last stage
    assert "completed" in shown.stdout

    failing = cli(
        stack, "submit", "hello_world", "n=3", "message=doomed", "failure_rate=1", "--wait"
    )
    assert failing.returncode == 1, (failing.stdout, failing.stderr)

    assert cli(stack, "submit", "hello_world", "n=0").returncode == 2
    assert cli(stack, "status", UNKNOWN_JOB).returncode == 3
    assert cli(stack, "status", UNKNOWN_JOB, api_key="not-a-key").returncode == 4
    assert cli(stack, "--address", "127.0.0.1:1", "status", UNKNOWN_JOB).returncode == 5


def test_watch_resumes_across_a_gateway_restart(stack: Stack, client: Client) -> None:
    # Slow tasks keep the job running while the gateway is killed and restarted.
    job = client.submit("hello_world", n=6, message="resume", task_delay_ms=300)
    seqs: list[int] = []
    restarted = False
    for event in client.watch(job.job_id, reconnect_for=60):
        seqs.append(event.seq)
        if not restarted and len(seqs) == 3:
            stack.kill("api_gateway")  # kill -9: the stream breaks mid-job
            stack.restart("api_gateway")
            restarted = True
    assert restarted and len(seqs) > 3
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, nothing repeated
    assert client.get(job.job_id).status is JobStatus.COMPLETED
