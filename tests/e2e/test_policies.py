"""Retries, failure policy, fan-out modes and poison messages, end to end."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import anyio
import httpx
import pytest

from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.postgres import PostgresBroker
from coremachine.stack.processes import Stack
from tests.databases import drop_database
from tests.e2e.conftest import make_stack, wait_for_job
from tests.e2e.faults import FAST_RECOVERY_ENV, scalar, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def policy_stack(admin_url, tmp_path_factory) -> Iterator[Stack]:
    stack, url = make_stack(
        admin_url,
        tmp_path_factory.mktemp("policies"),
        extra_env={
            **FAST_RECOVERY_ENV,
            "TASK_MAX_RETRIES": "10",
            # A task type no worker runs is dead-lettered at its second delivery.
            "WORKER_UNKNOWN_TASK_DELIVERIES": "2",
        },
    )
    stack.up()
    yield stack
    stack.stop()
    drop_database(admin_url, url)


@pytest.fixture
def client(policy_stack) -> Iterator[httpx.Client]:
    key = getattr(policy_stack, "api_key", None)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=policy_stack.http_url, timeout=30, headers=headers) as c:
        yield c


def run(client: httpx.Client, job_type: str, **params) -> dict:
    response = client.post(f"/api/jobs/submit/{job_type}", json=params)
    assert response.status_code in (200, 202), response.text
    return wait_for_job(client, response.json()["job"]["job_id"], timeout=180)


def test_flaky_tasks_are_retried_until_the_job_completes(policy_stack, client):
    job = run(client, "hello_world", n=50, failure_rate=0.3, message="flaky")
    assert job["status"] == "completed", job
    retried = scalar(
        policy_stack.database_url,
        "SELECT count(*) FROM coremachine.tasks WHERE job_id = %s AND attempt > 1",
        job["job_id"],
    )
    assert retried > 0
    assert len(job["result"]["replies"]) == 50


def test_exhausted_retries_fail_the_job_naming_the_task(policy_stack, client):
    job = run(client, "hello_world", n=4, failure_rate=1.0, message="doomed")
    assert job["status"] == "failed"
    assert "-s1-" in job["error"] and "after 11 attempt(s)" in job["error"]
    assert "STOCHASTIC FAILURE" in job["error"]
    statuses = scalar(
        policy_stack.database_url,
        "SELECT count(*) FROM coremachine.tasks WHERE job_id = %s"
        " AND status NOT IN ('failed', 'cancelled')",
        job["job_id"],
    )
    assert statuses == 0  # the rest was cancelled


def test_a_tolerant_stage_ends_the_job_completed_with_errors(policy_stack, client):
    job = run(
        client, "hello_world", n=3, failure_rate=1.0, tolerate_failures=-1, message="tolerant"
    )
    assert job["status"] == "completed_with_errors", job
    failed = job["result"]["failed_tasks"]
    assert sorted(f["task_index"] for f in failed) == [0, 1, 2]
    assert all(f["stage"] == 1 and "STOCHASTIC" in f["error"] for f in failed)


@pytest.mark.parametrize("count", [10, 3000])
def test_diamond_single_then_per_item_then_fan_in(policy_stack, client, count):
    job = run(client, "diamond", count=count)
    assert job["status"] == "completed", job
    assert job["result"]["sum_of_squares"] == count * (count + 1) * (2 * count + 1) // 6
    assert [s["task_count"] for s in job["stages"]] == [1, count, 1]
    # The fan-in task's parameters carry none of the results, however many:
    # its stage says it wants them, and the worker hands them to the handler.
    assert (
        scalar(
            policy_stack.database_url,
            "SELECT length(t.parameters::text) + s.previous_results::int FROM coremachine.tasks t"
            " JOIN coremachine.job_stages s USING (job_id, stage) WHERE job_id = %s AND stage = 3",
            job["job_id"],
        )
        == len("{}") + 1
    )


def test_poison_messages_are_dead_lettered_with_a_reason_and_consumers_survive(
    policy_stack, client
):
    async def inject_and_collect() -> dict[str, str]:
        broker = await PostgresBroker(policy_stack.database_url).open()
        try:
            job_msg = {"kind": "stage_ready", "job_id": "0" * 64, "job_type": "nope", "stage": 1}
            task_msg = {
                "kind": "task",
                "task_id": "0" * 64 + "-s1-0",
                "job_id": "0" * 64,
                "task_type": "nope",
                "attempt": 1,
            }
            missing = {
                "kind": "task",
                "task_id": "0" * 64 + "-s1-1",
                "job_id": "0" * 64,
                "task_type": "noop",
                "attempt": 1,
            }
            await broker.send(
                "jobs",
                [
                    OutgoingMessage("bad-job-body", b"\xff not json"),
                    OutgoingMessage("unknown-job-type", json.dumps(job_msg).encode()),
                ],
            )
            await broker.send(
                "tasks",
                [
                    OutgoingMessage("bad-task-body", b"{}"),
                    OutgoingMessage("unknown-task-type", json.dumps(task_msg).encode()),
                    OutgoingMessage("unknown-task", json.dumps(missing).encode()),
                ],
            )
            reasons: dict[str, str] = {}

            def collected() -> bool:
                return len(reasons) == 5

            with anyio.fail_after(30):
                while not collected():
                    for queue in ("jobs", "tasks"):
                        for d in await broker.list_dead_letters(queue):
                            reasons[d.message_id] = d.reason
                    await anyio.sleep(0.05)
            return reasons
        finally:
            await broker.close()

    reasons = anyio.run(inject_and_collect)
    assert reasons == {
        "bad-job-body": "UndecodableBody",
        "unknown-job-type": "UnknownJobType",
        "bad-task-body": "UndecodableBody",
        "unknown-task-type": "UnknownTaskType",
        "unknown-task": "UnknownTask",
    }
    # The consumers kept running: a normal job still completes.
    job = run(client, "hello_world", n=3, message=f"after poison {uuid.uuid4()}")
    assert job["status"] == "completed"
    wait_until(lambda: all(p.poll() is None for p in policy_stack.procs.values()), 1)


def test_heartbeats_keep_a_task_longer_than_its_lease_on_its_first_attempt(policy_stack, client):
    # Lease and broker lock are 3 s here; each task takes 4.5 s. Without the
    # heartbeat the janitor would reclaim the tasks (attempt 2) and the broker
    # would redeliver their messages.
    job = run(client, "hello_world", n=3, task_delay_ms=4500, message="long tasks")
    assert job["status"] == "completed", job
    attempts = scalar(
        policy_stack.database_url,
        "SELECT max(attempt) FROM coremachine.tasks WHERE job_id = %s",
        job["job_id"],
    )
    assert attempts == 1
    redelivered = scalar(
        policy_stack.database_url,
        "SELECT count(*) FROM coremachine.job_events WHERE job_id = %s"
        " AND event_type = 'task_retrying'",
        job["job_id"],
    )
    assert redelivered == 0
