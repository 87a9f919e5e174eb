"""The poison monitor: dead letters listed with their reason and ids, replayed or failed."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.postgres import PostgresBroker
from tests.e2e.test_api_http import db_job_status, submit, wait_until

pytestmark = pytest.mark.e2e


def send_garbage(stack, job_id: str, queue: str = "tasks") -> str:
    """Puts an undecodable message on a queue; its consumer dead-letters it."""
    message_id = f"garbage-{uuid.uuid4().hex}"

    async def send() -> None:
        broker = await PostgresBroker(stack.database_url).open()
        try:
            await broker.send(
                queue,
                [
                    OutgoingMessage(
                        message_id,
                        b"\x00 not a task message",
                        {"job_id": job_id, "task_id": f"{job_id}-s1-0"},
                    )
                ],
            )
        finally:
            await broker.close()

    asyncio.run(send())
    return message_id


def letters(http, queue: str) -> list[dict]:
    r = http.get("/api/monitor/poison", params={"queue": queue})
    assert r.status_code == 200, r.text
    return r.json()["queues"][queue]["messages"]


def letter_with(http, message_id: str, queue: str = "tasks") -> dict | None:
    return next((m for m in letters(http, queue) if m["message_id"] == message_id), None)


def test_dead_letters_are_listed_then_replayed(stack, http):
    job_id = submit(http, n=1, message="poison replay")
    message_id = send_garbage(stack, job_id)
    letter = wait_until(lambda: letter_with(http, message_id), "the dead letter")
    assert letter["reason"] and letter["delivery_count"] >= 1
    assert letter["job_id"] == job_id and letter["task_id"] == f"{job_id}-s1-0"
    both = http.get("/api/monitor/poison").json()["queues"]
    assert set(both) == {"jobs", "tasks"}

    action = {"queue": "tasks", "sequences": [letter["sequence"]], "action": "replay"}
    r = http.post("/api/monitor/poison", json=action)  # no confirm
    assert r.status_code == 400 and r.json()["message"].startswith("confirm:")
    r = http.post("/api/monitor/poison", json={**action, "confirm": False})
    assert r.status_code == 400 and r.json()["message"].startswith("confirm:")
    assert letter_with(http, message_id) is not None

    # With the worker stopped, a replayed message waits in its queue where we can see it.
    stack.kill("worker")
    try:
        r = http.post("/api/monitor/poison", json={**action, "confirm": True})
        assert r.status_code == 200, r.text
        assert r.json() == {"action": "replay", "queue": "tasks", "replayed": 1}
        assert letter_with(http, message_id) is None
        queues = http.get("/api/health").json()["components"]["queues"]
        assert queues["tasks"]["depth"] >= 1
    finally:
        stack.restart("worker")
    # Delivered again, and still garbage, it comes back dead.
    wait_until(lambda: letter_with(http, message_id), "the replayed message to be dead again")


def test_failing_dead_letters_fails_their_job_and_purges_them(stack, http):
    # Without a worker the job stays unfinished (and no task is mid-run when it fails).
    stack.kill("worker")
    try:
        job_id = submit(http, n=1, message="poison fail")
        wait_until(lambda: db_job_status(stack, job_id) == "processing", "the job to start")
        message_id = send_garbage(stack, job_id, queue="jobs")
        letter = wait_until(lambda: letter_with(http, message_id, "jobs"), "the dead letter")
        assert letter["job_id"] == job_id

        r = http.post(
            "/api/monitor/poison",
            json={
                "queue": "jobs",
                "sequences": [letter["sequence"]],
                "action": "fail",
                "confirm": True,
                "reason": "operator says no",
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["jobs_failed"] == 1 and r.json()["purged"] == 1
        assert db_job_status(stack, job_id) == "failed"
        job = http.get(f"/api/jobs/status/{job_id}").json()
        assert "operator says no" in job["error"]
        assert letter_with(http, message_id, "jobs") is None
    finally:
        stack.restart("worker")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"queue": "nope", "sequences": ["1"], "action": "replay", "confirm": True}, "queue"),
        ({"queue": "tasks", "sequences": [], "action": "replay", "confirm": True}, "sequences"),
        ({"queue": "tasks", "sequences": ["x"], "action": "replay", "confirm": True}, "sequences"),
        ({"queue": "tasks", "sequences": ["1"], "action": "delete", "confirm": True}, "action"),
        ({"queue": "tasks", "sequences": ["1"], "action": "fail", "confirm": True, "x": 1}, "x"),
    ],
)
def test_bad_poison_actions_are_400_naming_the_field(stack, http, body, field):
    r = http.post("/api/monitor/poison", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith(field)


def test_listing_an_unknown_queue_is_400(stack, http):
    r = http.get("/api/monitor/poison", params={"queue": "elsewhere"})
    assert r.status_code == 400 and r.json()["message"].startswith("queue:")


def test_a_dead_letter_with_an_unencodable_job_id_does_not_break_the_monitor(stack, http):
    """A lone surrogate in a dead-lettered body's job_id once made every
    listing answer 502 (UnicodeEncodeError into protobuf)."""
    message_id = f"surrogate-{uuid.uuid4().hex}"
    body = b'{"job_id": "\\ud800", "task_id": "\\udfff", "attempt": 1}'

    async def dead_letter_it() -> None:
        broker = await PostgresBroker(stack.database_url).open()
        try:
            await broker.send("tasks", [OutgoingMessage(message_id, body)])
            mine: list = []
            while not mine:
                mine = [
                    m
                    for m in await broker.receive("tasks", 100, max_wait=5)
                    if m.message_id == message_id
                ]
            await broker.dead_letter(mine[0], "UndecodableBody", "made by the test")
        finally:
            await broker.close()

    # Without a worker nothing else takes the message off the queue first.
    stack.kill("worker")
    try:
        asyncio.run(dead_letter_it())
    finally:
        stack.restart("worker")
    r = http.get("/api/monitor/poison", params={"queue": "tasks"})
    assert r.status_code == 200, r.text
    [letter] = [m for m in r.json()["queues"]["tasks"]["messages"] if m["message_id"] == message_id]
    assert letter["job_id"] == "\\ud800" and letter["task_id"] == "\\udfff"
    assert http.get("/api/monitor/poison").status_code == 200
    action = {"queue": "tasks", "sequences": [letter["sequence"]], "confirm": True}
    r = http.post("/api/monitor/poison", json={**action, "action": "fail"})
    assert r.status_code == 200, r.text
    assert r.json()["jobs_failed"] == 0 and r.json()["purged"] == 1
    assert letter_with(http, message_id) is None
