"""The orchestrator's jobs-queue consumer, on the in-memory state client and broker.

A small stage's results come with the "stage ready" / "finalize" message, so
the orchestrator plans or finalizes without reading anything back; without
them it reads the job and the results back (a page at a time where the stage
allows, tests/unit/test_paged_planning.py). Every message is settled
on its own: a bad one is dead-lettered alone, a message for a definition
served elsewhere is handed to the state service.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from coremachine.app._registry import Registry
from coremachine.builtin import create_app
from coremachine.services.orchestrator.claim_check import StagePayloads
from coremachine.services.orchestrator.consumer import JobsConsumer
from coremachine.services.orchestrator.planner import Planner, PlannerDefaults
from coremachine.shared.blobstores.memory import MemoryBlobStore
from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.memory import MemoryBroker
from coremachine.shared.domain.ids import job_id_for
from coremachine.shared.domain.jobs import NewJob, NewTask, StagePlan, StagePolicy
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.domain.tasks import TaskClaim, TaskOutcome
from coremachine.shared.messages import FinalizeJob, JobContext, StageReady, StageResultItem
from coremachine.shared.state_clients.memory import InMemoryStateClient

REGISTRY = Registry([create_app()])
HELLO = REGISTRY.job_type("hello_world")
assert HELLO is not None
PARAMETERS = HELLO.parameters(n=2, message="hi").model_dump(mode="json")
JOB_ID = job_id_for("hello_world", PARAMETERS)
SUMMARY = {"task_count": 2, "completed": 2, "failed": 0, "cancelled": 0, "status": "completed"}
FINGERPRINT = REGISTRY.fingerprint("hello_world")


@pytest.fixture
async def state() -> InMemoryStateClient:
    """hello_world n=2 whose stage 1 completed with greetings."""
    state = InMemoryStateClient()
    plan = StagePlan(
        2, tuple(NewTask(i, "hello_world_greeting", b"{}") for i in range(2)), StagePolicy()
    )
    await state.create_job(
        NewJob(
            JOB_ID, "hello_world", json.dumps(PARAMETERS).encode(), 2, FINGERPRINT, first_stage=plan
        )
    )
    claims = await state.claim_tasks("w", 30, [TaskClaim(f"{JOB_ID}-s1-{i}", 1) for i in range(2)])
    await state.complete_tasks(
        [
            TaskOutcome(
                c.task_id,
                c.task.lease_token,
                True,
                json.dumps({"greeting": f"hello {i}"}).encode(),
            )
            for i, c in enumerate(claims)
            if c.task is not None
        ]
    )
    state.calls.clear()
    return state


def consumer(state: InMemoryStateClient, broker: MemoryBroker) -> JobsConsumer:
    planner = Planner(
        state,
        REGISTRY,
        PlannerDefaults(RetryPolicy(), "tasks", 100),
        StagePayloads(MemoryBlobStore()),
    )
    return JobsConsumer(broker, "jobs", state, REGISTRY, planner, orchestrator_id="unit")


async def deliver(broker: MemoryBroker, *bodies: bytes) -> list[Any]:
    await broker.send("jobs", [OutgoingMessage(f"m{i}", body) for i, body in enumerate(bodies)])
    return await broker.receive("jobs", len(bodies), max_wait=1.0)


def context(results: list[dict[str, Any]], summaries: dict[str, Any]) -> JobContext:
    return JobContext(
        parameters=PARAMETERS,
        total_stages=2,
        stage_summaries=summaries,
        results=[
            StageResultItem(task_index=i, status="completed", result_json=json.dumps(r))
            for i, r in enumerate(results)
        ],
    )


def stage_two(state: InMemoryStateClient) -> list[dict[str, Any]]:
    tasks = sorted((t for t in state.tasks.values() if t.stage == 2), key=lambda t: t.task_index)
    return [json.loads(t.parameters_json) for t in tasks]


async def test_a_stage_is_planned_from_the_message_alone(state):
    broker = MemoryBroker()
    greetings = [{"greeting": f"from the message {i}"} for i in range(2)]
    message = StageReady(
        job_id=JOB_ID,
        job_type="hello_world",
        stage=2,
        context=context(greetings, {"1": SUMMARY}),
        definition=FINGERPRINT,
    )
    [received] = await deliver(broker, message.model_dump_json().encode())
    await consumer(state, broker).handle(received)
    assert state.calls == ["create_stage_tasks"]
    assert [(p["index"], p["greeting"]) for p in stage_two(state)] == [
        (0, "from the message 0"),
        (1, "from the message 1"),
    ]
    assert await broker.queue_depth("jobs") == 0


async def test_without_context_the_results_are_read_back(state):
    # hello_world's stage 2 matches stage 1 task for task: its results are
    # read a page at a time (tests/unit/test_paged_planning.py), here one.
    broker = MemoryBroker()
    message = StageReady(job_id=JOB_ID, job_type="hello_world", stage=2, definition=FINGERPRINT)
    [received] = await deliver(broker, message.model_dump_json().encode())
    await consumer(state, broker).handle(received)
    assert state.calls == ["get_job", "stage_results", "create_stage_tasks"]
    assert [p["greeting"] for p in stage_two(state)] == ["hello 0", "hello 1"]


async def test_a_job_is_finalized_from_the_message_alone(state):
    broker = MemoryBroker()
    message = StageReady(job_id=JOB_ID, job_type="hello_world", stage=2, definition=FINGERPRINT)
    [received] = await deliver(broker, message.model_dump_json().encode())
    await consumer(state, broker).handle(received)
    claims = await state.claim_tasks("w", 30, [TaskClaim(f"{JOB_ID}-s2-{i}", 1) for i in range(2)])
    await state.complete_tasks(
        [TaskOutcome(c.task_id, c.task.lease_token, True, b"{}") for c in claims if c.task]
    )
    state.calls.clear()
    replies = [{"reply": f"reply {i}"} for i in range(2)]
    final = FinalizeJob(
        job_id=JOB_ID,
        job_type="hello_world",
        context=context(replies, {"1": SUMMARY, "2": SUMMARY}),
        definition=FINGERPRINT,
    )
    [received] = await deliver(broker, final.model_dump_json().encode())
    await consumer(state, broker).handle(received)
    assert state.calls == ["complete_job"]
    job = await state.get_job(JOB_ID)
    assert job.status == "completed"
    assert job.result["replies"] == ["reply 0", "reply 1"] and job.result["total_tasks"] == 4


async def test_a_field_from_a_newer_sender_is_ignored_not_refused(state):
    # Rolling upgrades: a newer state service may add fields to the messages.
    broker = MemoryBroker()
    message = StageReady(job_id=JOB_ID, job_type="hello_world", stage=2, definition=FINGERPRINT)
    body = json.loads(message.model_dump_json()) | {"added_later": {"x": 1}}
    [received] = await deliver(broker, json.dumps(body).encode())
    await consumer(state, broker).handle(received)
    assert len(stage_two(state)) == 2
    assert await broker.queue_depth("jobs") == 0


async def test_a_message_for_a_definition_not_served_here_is_handed_over(state):
    broker = MemoryBroker()
    other = "e" * 64
    message = StageReady(job_id=JOB_ID, job_type="hello_world", stage=2, definition=other)
    [received] = await deliver(broker, message.model_dump_json().encode())
    await consumer(state, broker).handle(received)
    # Not planned here, not dead-lettered: parked until an orchestrator serves it.
    assert stage_two(state) == []
    assert await broker.queue_depth("jobs") == 0 and await broker.dead_letter_count("jobs") == 0
    job = await state.get_job(JOB_ID)
    assert other[:12] in job.waiting
    # An orchestrator of that definition registers: the message goes on.
    from coremachine.shared.domain.jobs import JobTypeDefinition

    assert (
        await state.register_orchestrator(
            "v2", "h", "", [JobTypeDefinition("hello_world", other, {}, {})], 30
        )
        == 1
    )
    assert (await state.get_job(JOB_ID)).waiting == ""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "UndecodableBody"),
        (
            b'{"kind": "stage_ready", "job_id": "x", "job_type": "hello_world", "stage": 2}',
            "UndecodableBody",
        ),
        (
            json.dumps(
                {"kind": "stage_ready", "job_id": JOB_ID, "job_type": "hello_world", "stage": 2**40}
            ).encode(),
            "UndecodableBody",
        ),
        (
            json.dumps(
                {"kind": "stage_ready", "job_id": JOB_ID, "job_type": "nope", "stage": 2}
            ).encode(),
            "UnknownJobType",
        ),
        (
            json.dumps(
                {"kind": "stage_ready", "job_id": "f" * 64, "job_type": "hello_world", "stage": 2}
            ).encode(),
            "UnknownJob",
        ),
    ],
)
async def test_a_bad_message_is_dead_lettered_alone_and_its_batch_mate_proceeds(
    state, body, reason
):
    broker = MemoryBroker()
    good = StageReady(job_id=JOB_ID, job_type="hello_world", stage=2, definition=FINGERPRINT)
    received = await deliver(broker, body, good.model_dump_json().encode())
    jobs = consumer(state, broker)
    for message in received:
        await jobs.handle(message)
    [letter] = await broker.list_dead_letters("jobs")
    assert letter.reason == reason and letter.body == body
    assert len(stage_two(state)) == 2  # the healthy message was planned
    assert await broker.queue_depth("jobs") == 0
