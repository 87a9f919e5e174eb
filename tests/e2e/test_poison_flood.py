"""A flood of poison messages shares the queues, and the consumers' batches, with a
healthy job that must complete; and a queued task whose message is gone is sent
again by the janitor. The four services as real processes."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.postgres import PostgresBroker
from coremachine.stack.processes import Stack
from tests.databases import drop_database
from tests.e2e.conftest import auth_headers, make_stack, wait_for_job
from tests.e2e.faults import FAST_RECOVERY_ENV, assert_counted_once, scalar, wait_until

pytestmark = pytest.mark.e2e

N = 200
JOB = "e" * 64


@pytest.fixture(scope="module")
def flood_stack(admin_url, tmp_path_factory) -> Iterator[Stack]:
    stack, url = make_stack(
        admin_url,
        tmp_path_factory.mktemp("flood"),
        extra_env={
            **FAST_RECOVERY_ENV,
            "LOG_LEVEL": "WARNING",
            "WORKER_UNKNOWN_TASK_DELIVERIES": "1",
            "TASK_RESEND_SECONDS": "1",
        },
    )
    stack.up()
    yield stack
    stack.stop()
    drop_database(admin_url, url)


def task_body(**fields) -> bytes:
    body = {"kind": "task", "task_id": f"{JOB}-s1-0", "job_id": JOB, "task_type": "noop"}
    return json.dumps({**body, "attempt": 1, **fields}).encode()


# (message id prefix, body, the reason its dead letter must give)
TASK_POISON = [
    ("garbage", b"\xff\xfe\x00 not json", "UndecodableBody"),
    ("huge-attempt", task_body(attempt=2**40), "UndecodableBody"),
    ("negative-attempt", task_body(attempt=-3), "UndecodableBody"),
    ("nul-task-id", task_body(task_id=f"{JOB}-s1-0\x00"), "UndecodableBody"),
    ("surrogate-job-id", task_body(job_id="\udc80" * 64), "UndecodableBody"),
    ("wrong-type", task_body(task_id=["not", "a", "string"]), "UndecodableBody"),
    ("unknown-task-type", task_body(task_type="no_such_task_type"), "UnknownTaskType"),
    ("unknown-task", task_body(), "UnknownTask"),
]
JOB_POISON = [
    ("job-garbage", b"{{{", "UndecodableBody"),
    (
        "job-huge-stage",
        json.dumps(
            {"kind": "stage_ready", "job_id": JOB, "job_type": "hello_world", "stage": 2**40}
        ).encode(),
        "UndecodableBody",
    ),
    (
        "job-unknown-type",
        json.dumps({"kind": "stage_ready", "job_id": JOB, "job_type": "nope", "stage": 1}).encode(),
        "UnknownJobType",
    ),
    (
        "job-unknown-job",
        json.dumps(
            {"kind": "stage_ready", "job_id": JOB, "job_type": "hello_world", "stage": 2}
        ).encode(),
        "UnknownJob",
    ),
]


def test_a_flood_of_poison_messages_does_not_stop_a_healthy_job(flood_stack):
    copies = 40  # 8 kinds x 40 on the tasks queue, 4 kinds x 10 on the jobs queue
    poison = [
        OutgoingMessage(f"{name}-{i}", body) for i in range(copies) for name, body, _ in TASK_POISON
    ]
    job_poison = [
        OutgoingMessage(f"{name}-{i}", body) for i in range(10) for name, body, _ in JOB_POISON
    ]

    async def inject() -> None:
        broker = await PostgresBroker(flood_stack.database_url).open()
        try:
            # In waves while the healthy job runs, so they share receive batches.
            for wave, start in enumerate(range(0, len(poison), 40)):
                await broker.send("tasks", poison[start : start + 40])
                await broker.send("jobs", job_poison[wave * 5 : wave * 5 + 5])
                await asyncio.sleep(0.05)
        finally:
            await broker.close()

    with httpx.Client(
        base_url=flood_stack.http_url, headers=auth_headers(flood_stack.api_key), timeout=30
    ) as http:
        submitted = http.post(
            "/api/jobs/submit/hello_world", json={"n": N, "message": "through the flood"}
        )
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job"]["job_id"]
        asyncio.run(inject())
        job = wait_for_job(http, job_id, timeout=180)
    assert job["status"] == "completed", job
    assert_counted_once(flood_stack.database_url, job_id, N)
    expected = Counter()
    for _, _, reason in TASK_POISON:
        expected[reason] += copies
    expected_jobs = Counter()
    for _, _, reason in JOB_POISON:
        expected_jobs[reason] += 10

    def reasons(queue: str) -> Counter:
        with psycopg.connect(flood_stack.database_url) as conn:
            rows = conn.execute(
                "SELECT dead_letter_reason, count(*) FROM broker.messages"
                " WHERE queue = %s AND dead_lettered GROUP BY 1",
                (queue,),
            ).fetchall()
        return Counter(dict(rows))

    seen: dict[str, Counter] = {}

    def all_dead_lettered() -> bool:
        seen.update(tasks=reasons("tasks"), jobs=reasons("jobs"))
        return seen["tasks"] == expected and seen["jobs"] == expected_jobs

    try:
        wait_until(all_dead_lettered, timeout=60, what="every poison message dead-lettered")
    except AssertionError:
        raise AssertionError(f"dead letters by reason: {seen}") from None
    # No healthy message was dead-lettered, and no service died of a message.
    assert (
        scalar(
            flood_stack.database_url,
            "SELECT count(*) FROM broker.messages WHERE dead_lettered AND message_id LIKE %s",
            f"{job_id}%",
        )
        == 0
    )
    assert {name: proc.poll() for name, proc in flood_stack.procs.items()} == {
        name: None for name in flood_stack.procs
    }


def test_a_queued_task_whose_message_was_lost_is_sent_again(flood_stack):
    flood_stack.kill("worker")  # nothing claims: the tasks stay queued
    try:
        with httpx.Client(
            base_url=flood_stack.http_url, headers=auth_headers(flood_stack.api_key), timeout=30
        ) as http:
            job_id = http.post(
                "/api/jobs/submit/hello_world", json={"n": 3, "message": "lost message"}
            ).json()["job"]["job_id"]
            lost = f"{job_id}-s1-1:1"
            wait_until(
                lambda: (
                    scalar(
                        flood_stack.database_url,
                        "SELECT count(*) FROM broker.messages WHERE message_id = %s",
                        lost,
                    )
                    == 1
                ),
                what="the task's message",
            )
            with psycopg.connect(flood_stack.database_url, autocommit=True) as conn:
                conn.execute("DELETE FROM broker.messages WHERE message_id = %s", (lost,))
            started = time.monotonic()
            flood_stack.restart("worker")
            job = wait_for_job(http, job_id, timeout=120)
    finally:
        if flood_stack.procs["worker"].poll() is not None:
            flood_stack.restart("worker")
    assert job["status"] == "completed", job
    resent = scalar(
        flood_stack.database_url,
        "SELECT count(*) FROM coremachine.tasks WHERE task_id = %s AND resent_at IS NOT NULL",
        f"{job_id}-s1-1",
    )
    assert resent == 1, "completed without the janitor re-sending the lost message?"
    assert time.monotonic() - started < 120
