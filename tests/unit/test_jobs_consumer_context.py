"""The orchestrator acts on a small stage from its message alone.

The state service sends a finished small stage's results (and the job's
parameters) with the "stage ready" / "finalize" message; the orchestrator
then plans or finalizes without reading anything back. A message without
them (a large stage) reads the job and the results in one call.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

from coremachine.common.v1 import common_pb2
from coremachine.services.orchestrator.claim_check import StagePayloads
from coremachine.services.orchestrator.consumer import JobsConsumer
from coremachine.services.orchestrator.jobs.hello_world import hello_world
from coremachine.services.orchestrator.planner import Planner
from coremachine.services.orchestrator.registry import JobRegistry
from coremachine.shared.blobstores.memory import MemoryBlobStore
from coremachine.shared.broker import ReceivedMessage
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.messages import FinalizeJob, JobContext, StageReady, StageResultItem
from coremachine.state.v1 import state_pb2

JOB_ID = "a" * 64
HELLO = hello_world(max_n=10, retry=RetryPolicy())
PARAMETERS = HELLO.parameters(n=2, message="hi").model_dump(mode="json")
SUMMARY = {"task_count": 2, "completed": 2, "failed": 0, "cancelled": 0, "status": "completed"}


class RecordingState:
    """Records which state RPCs the consumer calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.requests: list[Any] = []

    async def CreateStageTasks(self, request):
        self.calls.append("CreateStageTasks")
        self.requests.append(request)
        return state_pb2.CreateStageTasksResponse(created=len(request.tasks))

    async def CompleteJob(self, request):
        self.calls.append("CompleteJob")
        self.requests.append(request)
        return state_pb2.CompleteJobResponse(changed=True)

    def GetStageResults(self, request):
        self.calls.append("GetStageResults")

        async def stream() -> AsyncIterator[state_pb2.GetStageResultsResponse]:
            yield state_pb2.GetStageResultsResponse(
                job=common_pb2.Job(
                    job_id=JOB_ID,
                    job_type="hello_world",
                    status=common_pb2.JOB_STATUS_PROCESSING,
                    total_stages=2,
                    parameters_json=json.dumps(PARAMETERS).encode(),
                    stage_results_json=json.dumps({"1": SUMMARY}).encode(),
                )
            )
            yield state_pb2.GetStageResultsResponse(
                results=[
                    state_pb2.StageTaskResult(
                        task_index=i,
                        status=common_pb2.TASK_STATUS_COMPLETED,
                        result_json=json.dumps({"greeting": f"hello {i}"}).encode(),
                    )
                    for i in range(2)
                ]
            )

        return stream()


class SettlingBroker:
    def __init__(self) -> None:
        self.completed: list[str] = []

    async def complete(self, messages):
        self.completed += [m.message_id for m in messages]


def consumer(state: RecordingState, broker: SettlingBroker) -> JobsConsumer:
    payloads = StagePayloads(MemoryBlobStore())
    planner = Planner(state, 100, payloads)  # type: ignore[arg-type]
    registry = JobRegistry([HELLO])
    return JobsConsumer(broker, "jobs", state, registry, planner)  # type: ignore[arg-type]


def received(body: StageReady | FinalizeJob) -> ReceivedMessage:
    return ReceivedMessage(
        queue="jobs",
        message_id=body.message_id,
        body=body.model_dump_json().encode(),
        properties={},
        delivery_count=1,
        enqueued_at=None,  # type: ignore[arg-type]
        locked_until=None,  # type: ignore[arg-type]
        lock_token="t",
        raw=1,
    )


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


async def test_a_stage_is_planned_from_the_message_alone():
    state, broker = RecordingState(), SettlingBroker()
    greetings = [{"greeting": f"hello {i}"} for i in range(2)]
    message = StageReady(
        job_id=JOB_ID, job_type="hello_world", stage=2, context=context(greetings, {"1": SUMMARY})
    )
    await consumer(state, broker).handle(received(message))
    assert state.calls == ["CreateStageTasks"]
    [request] = state.requests
    planned = [json.loads(t.parameters_json) for t in request.tasks]
    assert [(p["index"], p["greeting"]) for p in planned] == [(0, "hello 0"), (1, "hello 1")]
    assert broker.completed == [message.message_id]


async def test_a_job_is_finalized_from_the_message_alone():
    state, broker = RecordingState(), SettlingBroker()
    replies = [{"reply": f"reply {i}"} for i in range(2)]
    message = FinalizeJob(
        job_id=JOB_ID,
        job_type="hello_world",
        context=context(replies, {"1": SUMMARY, "2": SUMMARY}),
    )
    await consumer(state, broker).handle(received(message))
    assert state.calls == ["CompleteJob"]
    result = json.loads(state.requests[0].result_json)
    assert result["replies"] == ["reply 0", "reply 1"] and result["total_tasks"] == 4


async def test_without_context_the_job_and_results_are_read_in_one_call():
    state, broker = RecordingState(), SettlingBroker()
    message = StageReady(job_id=JOB_ID, job_type="hello_world", stage=2)
    await consumer(state, broker).handle(received(message))
    assert state.calls == ["GetStageResults", "CreateStageTasks"]
    planned = [json.loads(t.parameters_json) for t in state.requests[0].tasks]
    assert [p["greeting"] for p in planned] == ["hello 0", "hello 1"]


async def test_a_field_from_a_newer_sender_is_ignored_not_refused():
    # Rolling upgrades: a newer state service may add fields to the messages.
    state, broker = RecordingState(), SettlingBroker()
    message = StageReady(job_id=JOB_ID, job_type="hello_world", stage=2)
    body = json.loads(message.model_dump_json()) | {"added_later": {"x": 1}}
    newer = dataclasses.replace(received(message), body=json.dumps(body).encode())
    await consumer(state, broker).handle(newer)
    assert state.calls == ["GetStageResults", "CreateStageTasks"]
    assert broker.completed == [message.message_id]
