"""Claim check wired into the worker and the orchestrator, on the in-memory blob store.

Large task results and parameters travel as references to blobs; handlers,
planning and aggregators only ever see the real values.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from coremachine.common.v1 import common_pb2
from coremachine.services.orchestrator.claim_check import StagePayloads
from coremachine.services.orchestrator.planner import Planner
from coremachine.services.orchestrator.registry import (
    AggregateContext,
    Custom,
    FanIn,
    JobType,
    MatchPrevious,
    Single,
    StageSpec,
)
from coremachine.services.worker.claim_check import TaskPayloads
from coremachine.services.worker.consumer import InFlight, TaskConsumer
from coremachine.services.worker.context import TaskContext
from coremachine.shared.blobstores.memory import MemoryBlobStore
from coremachine.shared.claim_check import DEFAULT_CONTAINER, is_reference
from coremachine.state.v1 import state_pb2

THRESHOLD = 1024
JOB_ID = "f" * 64
BIG = "x" * (THRESHOLD * 4)


class FakeState:
    """The two state RPCs the wiring calls: stage results (streamed) and task creation."""

    def __init__(self, results: dict[int, list[tuple[int, bytes]]] | None = None) -> None:
        self.results = results or {}
        self.created: list[state_pb2.CreateStageTasksRequest] = []

    def GetStageResults(
        self, request: state_pb2.GetStageResultsRequest
    ) -> AsyncIterator[state_pb2.GetStageResultsResponse]:
        rows = [
            state_pb2.StageTaskResult(
                task_index=index,
                status=common_pb2.TASK_STATUS_COMPLETED,
                result_json=raw,
            )
            for index, raw in self.results.get(request.stage, [])
        ]

        async def stream() -> AsyncIterator[state_pb2.GetStageResultsResponse]:
            if request.include_job:
                yield state_pb2.GetStageResultsResponse(job=common_pb2.Job(job_id=request.job_id))
            # Two chunks, as the state service streams large stages.
            yield state_pb2.GetStageResultsResponse(results=rows[:1])
            yield state_pb2.GetStageResultsResponse(results=rows[1:])

        return stream()

    async def CreateStageTasks(
        self, request: state_pb2.CreateStageTasksRequest
    ) -> state_pb2.CreateStageTasksResponse:
        self.created.append(request)
        return state_pb2.CreateStageTasksResponse(created=len(request.tasks))


@pytest.fixture
async def store() -> MemoryBlobStore:
    store = MemoryBlobStore()
    await store.ensure_container(DEFAULT_CONTAINER)
    return store


async def blob_names(store: MemoryBlobStore) -> list[str]:
    return [info.name async for info in store.list_blobs(DEFAULT_CONTAINER)]


# -- worker ------------------------------------------------------------------


async def test_worker_stores_a_large_result_and_reports_a_reference(store):
    payloads = TaskPayloads(store, threshold_bytes=THRESHOLD)
    raw = await payloads.store_result({"data": BIG}, job_id=JOB_ID, stage=2, task_index=7)
    assert is_reference(raw) and len(raw) < THRESHOLD
    [name] = await blob_names(store)
    assert name.startswith(f"job/{JOB_ID}/stage/2/task/7/result/")
    assert json.loads(await store.get(DEFAULT_CONTAINER, name)) == {"data": BIG}
    assert await payloads.load(raw) == {"data": BIG}


async def test_worker_retry_of_the_same_result_rewrites_the_same_blob(store):
    payloads = TaskPayloads(store, threshold_bytes=THRESHOLD)
    first = await payloads.store_result([BIG], job_id=JOB_ID, stage=1, task_index=0)
    second = await payloads.store_result([BIG], job_id=JOB_ID, stage=1, task_index=0)
    assert first == second
    assert len(await blob_names(store)) == 1


async def test_worker_leaves_a_small_result_inline(store):
    payloads = TaskPayloads(store, threshold_bytes=THRESHOLD)
    raw = await payloads.store_result({"n": 1}, job_id=JOB_ID, stage=1, task_index=0)
    assert json.loads(raw) == {"n": 1}
    assert await blob_names(store) == []


def _consumer(store: MemoryBlobStore, handlers: dict[str, Any]) -> TaskConsumer:
    return TaskConsumer(
        broker=None,  # type: ignore[arg-type]  (_execute never touches the broker)
        queue="tasks",
        state=FakeState(),  # type: ignore[arg-type]
        handlers=handlers,
        worker_id="unit",
        concurrency=1,
        receive_batch=1,
        completion_batch=1,
        lease_seconds=30,
        lock_seconds=30,
        shutdown_grace=0,
        blobs=store,
        payloads=TaskPayloads(store, threshold_bytes=THRESHOLD),
    )


async def _run_task(consumer: TaskConsumer, parameters_json: bytes) -> state_pb2.TaskOutcome:
    task = common_pb2.Task(
        task_id="t-1",
        job_id=JOB_ID,
        job_type="unit",
        task_type="echo",
        stage=1,
        task_index=3,
        attempt=1,
        parameters_json=parameters_json,
    )
    entry = InFlight(message=None, task_id="t-1", lease_token="lease")  # type: ignore[arg-type]
    await consumer._execute(entry, task)
    assert entry.outcome is not None
    return entry.outcome


async def test_worker_unwraps_referenced_parameters_and_wraps_the_large_result(store):
    seen: list[dict[str, Any]] = []

    async def echo(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        seen.append(params)
        assert ctx.blobs is store
        return {"echo": params["text"] * 2}

    # The orchestrator stored these parameters: the task carries only the reference.
    orchestrator = StagePayloads(store, threshold_bytes=THRESHOLD)
    [reference] = await orchestrator.wrap_parameters(
        [json.dumps({"text": BIG}).encode()], job_id=JOB_ID, stage=1
    )
    assert is_reference(reference)
    outcome = await _run_task(_consumer(store, {"echo": echo}), reference)

    assert seen == [{"text": BIG}]  # the handler never saw the reference
    assert outcome.succeeded, outcome.error
    assert is_reference(outcome.result_json)
    payloads = TaskPayloads(store, threshold_bytes=THRESHOLD)
    assert await payloads.load(outcome.result_json) == {"echo": BIG * 2}
    names = await blob_names(store)
    assert any(n.startswith(f"job/{JOB_ID}/stage/1/task/3/result/") for n in names)


async def test_worker_passes_small_parameters_and_results_untouched(store):
    async def echo(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"echo": params["text"]}

    outcome = await _run_task(_consumer(store, {"echo": echo}), b'{"text": "hi"}')
    assert outcome.succeeded
    assert json.loads(outcome.result_json) == {"echo": "hi"}
    assert await blob_names(store) == []


async def test_worker_fails_the_task_retryably_when_a_referenced_blob_is_gone(store):
    async def echo(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        raise AssertionError("must not run")

    orchestrator = StagePayloads(store, threshold_bytes=THRESHOLD)
    [reference] = await orchestrator.wrap_parameters(
        [json.dumps({"text": BIG}).encode()], job_id=JOB_ID, stage=1
    )
    [name] = await blob_names(store)
    await store.delete(DEFAULT_CONTAINER, name)
    outcome = await _run_task(_consumer(store, {"echo": echo}), reference)
    assert not outcome.succeeded and outcome.retryable
    assert "missing" in outcome.error


async def test_fan_in_by_reference_unwraps_each_result(store):
    payloads = TaskPayloads(store, threshold_bytes=THRESHOLD)
    large = await payloads.store_result({"v": BIG}, job_id=JOB_ID, stage=1, task_index=0)
    state = FakeState({1: [(0, large), (1, b'{"v": "small"}')]})
    ctx = TaskContext(
        "t",
        JOB_ID,
        "unit",
        2,
        0,
        1,
        state,
        store,
        payloads,  # type: ignore[arg-type]
    )
    resolved = await ctx.resolve_previous_results(
        {"$stage_results": {"job_id": JOB_ID, "stage": 1}}
    )
    assert resolved == [
        {"task_index": 0, "status": "completed", "result": {"v": BIG}},
        {"task_index": 1, "status": "completed", "result": {"v": "small"}},
    ]


# -- orchestrator ------------------------------------------------------------


async def test_orchestrator_wraps_only_large_parameters(store):
    payloads = StagePayloads(store, threshold_bytes=THRESHOLD)
    small, large = json.dumps({"i": 0}).encode(), json.dumps({"i": BIG}).encode()
    wrapped = await payloads.wrap_parameters([small, large], job_id=JOB_ID, stage=4)
    assert wrapped[0] == small
    assert is_reference(wrapped[1])
    [name] = await blob_names(store)
    assert name.startswith(f"job/{JOB_ID}/stage/4/task/1/parameters/")
    assert await payloads.load_many(wrapped) == [{"i": 0}, {"i": BIG}]


def _job(job_type: JobType, parameters: dict[str, Any]) -> common_pb2.Job:
    return common_pb2.Job(
        job_id=JOB_ID,
        job_type=job_type.name,
        total_stages=len(job_type.stages),
        parameters_json=json.dumps(parameters).encode(),
    )


async def test_planner_sees_real_previous_results_and_wraps_large_parameters(store):
    worker = TaskPayloads(store, threshold_bytes=THRESHOLD)
    previous = [
        (0, await worker.store_result({"text": BIG}, job_id=JOB_ID, stage=1, task_index=0)),
        (1, await worker.store_result({"text": "tiny"}, job_id=JOB_ID, stage=1, task_index=1)),
    ]
    state = FakeState({1: previous})
    planner = Planner(state, 100, StagePayloads(store, threshold_bytes=THRESHOLD))  # type: ignore[arg-type]
    job_type = JobType(
        "unit",
        "",
        parameters=None,  # type: ignore[arg-type]
        stages=(
            StageSpec("one", "noop", Single(lambda ctx: {})),
            StageSpec("two", "noop", MatchPrevious(lambda ctx, p: {"copy": p.result["text"]})),
        ),
    )
    _, previous = await planner.job_and_results(JOB_ID, 1)
    assert await planner.plan_stage(_job(job_type, {}), job_type, 2, previous) == 2

    [request] = state.created
    first, second = (t.parameters_json for t in request.tasks)
    assert is_reference(first)  # planned from the real (fetched) value, then stored again
    assert json.loads(second) == {"copy": "tiny"}
    assert await StagePayloads(store).load_many([first]) == [{"copy": BIG}]


async def test_fan_in_planning_and_aggregation_see_real_values(store):
    worker = TaskPayloads(store, threshold_bytes=THRESHOLD)
    results = [
        (
            i,
            await worker.store_result(
                {"v": f"{i}" * THRESHOLD}, job_id=JOB_ID, stage=1, task_index=i
            ),
        )
        for i in range(3)
    ]
    state = FakeState({1: results, 2: results})
    planner = Planner(state, 100, StagePayloads(store, threshold_bytes=THRESHOLD))  # type: ignore[arg-type]
    seen: list[AggregateContext] = []

    def aggregate(ctx: AggregateContext) -> int:
        seen.append(ctx)
        return len(ctx.final_results)

    job_type = JobType(
        "unit",
        "",
        parameters=None,  # type: ignore[arg-type]
        stages=(
            StageSpec("one", "noop", Single(lambda ctx: {})),
            StageSpec("two", "noop", FanIn()),
        ),
        aggregate=aggregate,
    )
    job = _job(job_type, {})
    _, previous = await planner.job_and_results(JOB_ID, 1)
    await planner.plan_stage(job, job_type, 2, previous)
    [request] = state.created
    [task] = request.tasks
    # Inlined (under FanIn's limit) but over the claim-check threshold: stored.
    assert is_reference(task.parameters_json)
    [params] = await StagePayloads(store).load_many([task.parameters_json])
    assert [p["result"] for p in params["previous_results"]] == [
        {"v": f"{i}" * THRESHOLD} for i in range(3)
    ]

    job.total_stages = 2
    _, final = await planner.job_and_results(JOB_ID, 2)
    assert await planner.finalize(job, job_type, final) == 3
    assert [r.result for r in seen[0].final_results] == [
        {"v": f"{i}" * THRESHOLD} for i in range(3)
    ]


async def test_planner_bounds_each_create_call_by_bytes_as_well_as_count(store, monkeypatch):
    monkeypatch.setattr("coremachine.services.orchestrator.planner.CHUNK_MAX_BYTES", 3 * THRESHOLD)
    state = FakeState()
    planner = Planner(state, 100, StagePayloads(store, threshold_bytes=10 * THRESHOLD))  # type: ignore[arg-type]
    job_type = JobType(
        "unit",
        "",
        parameters=None,  # type: ignore[arg-type]
        stages=(StageSpec("one", "noop", Custom(lambda ctx: [{"p": "y" * THRESHOLD}] * 7)),),
    )
    assert await planner.plan_stage(_job(job_type, {}), job_type, 1, []) == 7
    # Each ~1 KiB: two fit under 3 KiB per call; every call states the stage's total.
    assert [len(r.tasks) for r in state.created] == [2, 2, 2, 1]
    assert {r.total_tasks for r in state.created} == {7}
    assert [t.task_index for r in state.created for t in r.tasks] == list(range(7))
