"""Claim check wired into the worker and the orchestrator, on the in-memory blob store.

Large task results and parameters travel as references to blobs; handlers,
planning and aggregators only ever see the real values.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from coremachine.app import (
    AggregateContext,
    App,
    Custom,
    FanIn,
    MatchPrevious,
    PreviousResult,
    Single,
    Stage,
    TaskContext,
)
from coremachine.app._registry import Registry
from coremachine.services.orchestrator.claim_check import StagePayloads
from coremachine.services.orchestrator.planner import Planner, PlannerDefaults
from coremachine.services.worker.claim_check import TaskPayloads
from coremachine.services.worker.consumer import TaskConsumer
from coremachine.services.worker.inflight import InFlight
from coremachine.shared.blobstores.memory import MemoryBlobStore
from coremachine.shared.claim_check import DEFAULT_CONTAINER, is_reference
from coremachine.shared.domain.jobs import NewJob, NewTask, StagePlan, StagePolicy
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.domain.tasks import ClaimedTask, TaskOutcome
from coremachine.shared.state_clients.memory import InMemoryStateClient

THRESHOLD = 1024
JOB_ID = "f" * 64
BIG = "x" * (THRESHOLD * 4)


class NoParameters(BaseModel):
    pass


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


def _consumer(
    store: MemoryBlobStore, handler: Any, state: InMemoryStateClient | None = None
) -> TaskConsumer:
    app = App("unit")
    app.task("echo")(handler)
    return TaskConsumer(
        broker=None,  # type: ignore[arg-type]  (an attempt never touches the broker)
        queues=["tasks"],
        state=state or InMemoryStateClient(),
        handlers=Registry([app]).handlers(),
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


async def _run_task(
    consumer: TaskConsumer, parameters_json: bytes, *, stage: int = 1, previous: bool = False
) -> TaskOutcome:
    task = ClaimedTask(
        task_id="t-1",
        job_id=JOB_ID,
        job_type="unit",
        task_type="echo",
        stage=stage,
        task_index=3,
        attempt=1,
        parameters_json=parameters_json,
        lease_token="lease",
        queue="tasks",
        previous_results=previous,
    )
    return await consumer._attempt(InFlight(message=None, task=task))  # type: ignore[arg-type]


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
    outcome = await _run_task(_consumer(store, echo), reference)

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

    outcome = await _run_task(_consumer(store, echo), b'{"text": "hi"}')
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
    outcome = await _run_task(_consumer(store, echo), reference)
    assert not outcome.succeeded and outcome.retryable
    assert "missing" in outcome.error


async def _state_with_stage_one(
    store: MemoryBlobStore, results: list[bytes]
) -> InMemoryStateClient:
    """A job whose stage 1 completed with these (stored) results."""
    state = InMemoryStateClient()
    policy = StagePolicy(RetryPolicy(), queue="tasks")
    plan = StagePlan(
        len(results), tuple(NewTask(i, "echo", b"{}") for i in range(len(results))), policy
    )
    await state.create_job(NewJob(JOB_ID, "unit", b"{}", 2, first_stage=plan))
    claims = await state.claim_tasks("w", 30, [t for t in _claims(state)])
    await state.complete_tasks(
        [
            TaskOutcome(c.task_id, c.task.lease_token, True, result_json=raw)
            for c, raw in zip(claims, results, strict=True)
            if c.task is not None
        ]
    )
    return state


def _claims(state: InMemoryStateClient):
    from coremachine.shared.domain.tasks import TaskClaim

    return [
        TaskClaim(t.task_id, t.attempt)
        for t in sorted(state.tasks.values(), key=lambda t: t.task_index)
    ]


async def test_fan_in_handlers_get_each_previous_result_unwrapped(store):
    payloads = TaskPayloads(store, threshold_bytes=THRESHOLD)
    large = await payloads.store_result({"v": BIG}, job_id=JOB_ID, stage=1, task_index=0)
    state = await _state_with_stage_one(store, [large, b'{"v": "small"}'])
    seen: list[list[PreviousResult]] = []

    def echo(params: dict[str, Any], ctx: TaskContext) -> int:
        seen.append(list(ctx.previous_results))
        return len(ctx.previous_results)

    outcome = await _run_task(_consumer(store, echo, state), b"{}", stage=2, previous=True)
    assert outcome.succeeded, outcome.error
    assert seen == [
        [
            PreviousResult(0, "completed", {"v": BIG}),
            PreviousResult(1, "completed", {"v": "small"}),
        ]
    ]


async def test_a_stage_that_did_not_ask_gets_no_previous_results(store):
    def echo(params: dict[str, Any], ctx: TaskContext) -> Any:
        return ctx.previous_results

    outcome = await _run_task(_consumer(store, echo), b"{}", stage=2, previous=False)
    assert not outcome.succeeded and not outcome.retryable
    assert "did not ask for the previous stage's results" in outcome.error


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


def _planner(state: InMemoryStateClient, app: App, threshold: int = THRESHOLD) -> Planner:
    defaults = PlannerDefaults(RetryPolicy(), "tasks", chunk_size=100)
    return Planner(
        state, Registry([app]), defaults, StagePayloads(store_of(state), threshold_bytes=threshold)
    )


_STORES: dict[int, MemoryBlobStore] = {}


def store_of(state: InMemoryStateClient) -> MemoryBlobStore:
    return _STORES[id(state)]


def _unit_app(stages: list[Stage], aggregate: Any = None) -> App:
    app = App("unit")
    app.task("noop")(lambda params: {})
    app.task("echo")(lambda params: params)
    app.job("unit", parameters=NoParameters, stages=stages, aggregate=aggregate)
    return app


async def test_planner_sees_real_previous_results_and_wraps_large_parameters(store):
    worker = TaskPayloads(store, threshold_bytes=THRESHOLD)
    state = await _state_with_stage_one(
        store,
        [
            await worker.store_result({"text": BIG}, job_id=JOB_ID, stage=1, task_index=0),
            await worker.store_result({"text": "tiny"}, job_id=JOB_ID, stage=1, task_index=1),
        ],
    )
    _STORES[id(state)] = store
    app = _unit_app(
        [
            Stage("one", "noop", Single()),
            Stage("two", "noop", MatchPrevious(lambda ctx, p: {"copy": p.result["text"]})),
        ]
    )
    planner = _planner(state, app)
    job_type = planner.registry.job_type("unit")
    assert job_type is not None
    job, previous = await planner.job_and_results(JOB_ID, 1)
    assert await planner.plan_stage(job, job_type, 2, previous) == 2

    stage_two = sorted(
        (t for t in state.tasks.values() if t.stage == 2), key=lambda t: t.task_index
    )
    first, second = (t.parameters_json for t in stage_two)
    assert is_reference(first)  # planned from the real (fetched) value, then stored again
    assert json.loads(second) == {"copy": "tiny"}
    assert await StagePayloads(store).load_many([first]) == [{"copy": BIG}]


async def test_fan_in_aggregation_sees_real_values(store):
    worker = TaskPayloads(store, threshold_bytes=THRESHOLD)
    results = [
        await worker.store_result({"v": f"{i}" * THRESHOLD}, job_id=JOB_ID, stage=1, task_index=i)
        for i in range(3)
    ]
    state = await _state_with_stage_one(store, results)
    _STORES[id(state)] = store
    seen: list[AggregateContext] = []

    def aggregate(ctx: AggregateContext) -> int:
        seen.append(ctx)
        return len(ctx.final_results)

    planner = _planner(
        state, _unit_app([Stage("one", "noop", Single()), Stage("two", "noop", FanIn())], aggregate)
    )
    job_type = planner.registry.job_type("unit")
    assert job_type is not None
    job, final = await planner.job_and_results(JOB_ID, 1)
    assert await planner.finalize(job, job_type, final) == 3
    assert [r.result for r in seen[0].final_results] == [
        {"v": f"{i}" * THRESHOLD} for i in range(3)
    ]


async def test_planner_bounds_each_create_call_by_bytes_as_well_as_count(store, monkeypatch):
    monkeypatch.setattr("coremachine.services.orchestrator.planner.CHUNK_MAX_BYTES", 3 * THRESHOLD)
    state = InMemoryStateClient()
    _STORES[id(state)] = store
    await state.create_job(NewJob(JOB_ID, "unit", b"{}", 1))
    calls: list[StagePlan] = []
    create = state.create_stage_tasks

    async def recording(job_id: str, stage: int, plan: StagePlan) -> int:
        calls.append(plan)
        return await create(job_id, stage, plan)

    state.create_stage_tasks = recording  # type: ignore[method-assign]
    app = _unit_app([Stage("one", "noop", Custom(lambda ctx: [{"p": "y" * THRESHOLD}] * 7))])
    planner = _planner(state, app, threshold=10 * THRESHOLD)
    job_type = planner.registry.job_type("unit")
    assert job_type is not None
    job = await state.get_job(JOB_ID)
    assert await planner.plan_stage(job, job_type, 1, []) == 7
    # Each ~1 KiB: two fit under 3 KiB per call; every call states the stage's total.
    assert [len(p.tasks) for p in calls] == [2, 2, 2, 1]
    assert {p.total_tasks for p in calls} == {7}
    assert [t.task_index for p in calls for t in p.tasks] == list(range(7))
