"""Large FromParameter and MatchPrevious stages are planned a page at a time.

The orchestrator must not hold a million-task stage's results and specs at
once: it creates STAGE_CREATE_CHUNK_SIZE tasks per call (the stage's total
fixed by the first), reads a MatchPrevious stage's previous results a page at
a time, and finalizes a job without an aggregator without reading its results.
On the in-memory state client; the gRPC paging is in the contract suite and
the crash-and-replay of a chunked stage in tests/e2e (kill -9 mid-planning).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from pydantic import BaseModel

from coremachine.app import (
    App,
    Custom,
    FromParameter,
    MatchPrevious,
    PerItem,
    PlanContext,
    Stage,
)
from coremachine.app._registry import Registry
from coremachine.services.orchestrator.claim_check import StagePayloads
from coremachine.services.orchestrator.consumer import JobsConsumer
from coremachine.services.orchestrator.planner import Planner, PlannerDefaults
from coremachine.shared.blobstores.memory import MemoryBlobStore
from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.memory import MemoryBroker
from coremachine.shared.domain.ids import job_id_for
from coremachine.shared.domain.jobs import NewJob, StagePlan
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.domain.tasks import TaskClaim, TaskOutcome
from coremachine.shared.messages import FinalizeJob, StageReady
from coremachine.shared.state_clients.memory import InMemoryStateClient

PAGE = 3
N = 8


class Params(BaseModel):
    n: int


seen: list[tuple[int, list[int]]] = []  # (task index, indexes in ctx.previous) per build


def match(ctx: PlanContext, previous: Any) -> dict[str, Any]:
    seen.append((previous.task_index, [p.task_index for p in ctx.previous]))
    if ctx.parameters.get("fail_at") == previous.task_index:
        raise ValueError(f"no plan for task {previous.task_index}")
    return {"from": previous.result["v"]}


def slow_hook(ctx: PlanContext) -> list[dict[str, Any]]:
    """A planning hook that blocks its thread (a heavy user computation)."""
    time.sleep(float(ctx.parameters.get("hook_seconds", 0)))
    return [{"n": len(ctx.previous)}]


def build_app() -> App:
    app = App("paging")
    task = app.task("paging_task")(lambda params: {})
    first = Stage("one", task, FromParameter("n", lambda ctx, i: {"i": i}))
    app.job("paged", parameters=Params, stages=[first, Stage("two", task, MatchPrevious(match))])
    app.job(
        "aggregated",
        parameters=Params,
        stages=[first, Stage("two", task, MatchPrevious(match))],
        aggregate=lambda ctx: {"sum": sum(r.result["w"] for r in ctx.final_results)},
    )
    app.job(
        "hook",
        parameters=Params,
        stages=[first, Stage("two", task, Custom(slow_hook))],
    )
    app.job(
        "items",
        parameters=Params,
        stages=[
            first,
            Stage("two", task, PerItem(lambda ctx: [p.result["v"] for p in ctx.previous])),
        ],
    )
    return app


REGISTRY = Registry([build_app()])


class Recording(InMemoryStateClient):
    """The in-memory state client, recording each create call's (total, indexes)."""

    def __init__(self) -> None:
        super().__init__()
        self.creates: list[tuple[int, list[int]]] = []
        self.fail_create_at: int | None = None
        self.create_seconds = 0.0
        self.gates: dict[str, asyncio.Event] = {}  # job id -> creation waits for it

    async def create_stage_tasks(self, job_id: str, stage: int, plan: StagePlan) -> int:
        if self.fail_create_at == len(self.creates):
            self.fail_create_at = None
            raise ConnectionError("state service went away")
        await asyncio.sleep(self.create_seconds)
        if job_id in self.gates:
            await self.gates[job_id].wait()
        self.creates.append((plan.total_tasks, [t.task_index for t in plan.tasks]))
        return await super().create_stage_tasks(job_id, stage, plan)


def consumer(state: InMemoryStateClient, broker: MemoryBroker) -> JobsConsumer:
    planner = Planner(
        state,
        REGISTRY,
        PlannerDefaults(RetryPolicy(), "tasks", PAGE),
        StagePayloads(MemoryBlobStore()),
    )
    return JobsConsumer(broker, "jobs", state, REGISTRY, planner, orchestrator_id="unit")


async def handle(
    state: InMemoryStateClient, message: StageReady | FinalizeJob, lock_seconds: float = 30.0
) -> MemoryBroker:
    broker = MemoryBroker(lock_duration=lock_seconds)
    await broker.send("jobs", [OutgoingMessage("m", message.model_dump_json().encode())])
    [received] = await broker.receive("jobs", 1, max_wait=1.0)
    await consumer(state, broker).handle(received)
    return broker


async def run_stage(state: InMemoryStateClient, job_id: str, stage: int, result) -> None:
    """Claims and completes every task of a stage, task i with result(i)."""
    tasks = sorted(
        (t for t in state.tasks.values() if t.stage == stage), key=lambda t: t.task_index
    )
    claims = await state.claim_tasks("w", 30, [TaskClaim(t.task_id, 1) for t in tasks])
    await state.complete_tasks(
        [
            TaskOutcome(c.task_id, c.task.lease_token, True, json.dumps(result(i)).encode())
            for i, c in enumerate(claims)
            if c.task is not None
        ]
    )


async def job_after_stage_one(
    job_type: str, state: Recording | None = None, **params: Any
) -> tuple[Recording, str]:
    """A job whose stage 1 was planned from the queue (in pages) and has run."""
    parameters = {"n": N, **params}
    job_id = job_id_for(job_type, parameters)
    state = state or Recording()
    await state.create_job(
        NewJob(job_id, job_type, json.dumps(parameters).encode(), 2, REGISTRY.fingerprint(job_type))
    )
    await handle(state, StageReady(job_id=job_id, job_type=job_type, stage=1))
    await run_stage(state, job_id, 1, lambda i: {"v": i * 10})
    state.calls.clear()
    state.creates.clear()
    seen.clear()
    return state, job_id


async def stop_when_drained(
    broker: MemoryBroker, stopping: asyncio.Event, running: asyncio.Task[None]
) -> None:
    """Stops a running consumer once its queue is empty (or after 5 s)."""
    for _ in range(100):
        if await broker.queue_depth("jobs") == 0:
            break
        await asyncio.sleep(0.05)
    stopping.set()
    await running


def stage_params(state: InMemoryStateClient, stage: int) -> list[dict[str, Any]]:
    tasks = sorted(
        (t for t in state.tasks.values() if t.stage == stage), key=lambda t: t.task_index
    )
    return [json.loads(t.parameters_json) for t in tasks]


async def test_stage_one_pages_each_carry_the_whole_stage_total():
    parameters = {"n": N}
    job_id = job_id_for("paged", parameters)
    state = Recording()
    await state.create_job(
        NewJob(job_id, "paged", json.dumps(parameters).encode(), 2, REGISTRY.fingerprint("paged"))
    )
    await handle(state, StageReady(job_id=job_id, job_type="paged", stage=1))
    assert state.creates == [(N, [0, 1, 2]), (N, [3, 4, 5]), (N, [6, 7])]


async def test_match_previous_reads_the_previous_results_a_page_at_a_time():
    state, job_id = await job_after_stage_one("paged")
    await handle(state, StageReady(job_id=job_id, job_type="paged", stage=2))
    # The job, then a page of results and the page's tasks, page after page:
    # never the whole previous stage in one read.
    assert state.calls == ["get_job"] + ["stage_results", "create_stage_tasks"] * 3
    assert state.creates == [(N, [0, 1, 2]), (N, [3, 4, 5]), (N, [6, 7])]
    # Each build saw its own page of previous results, and only that.
    assert seen == [(i, list(range(i - i % PAGE, min(i - i % PAGE + PAGE, N)))) for i in range(N)]
    assert [p["from"] for p in stage_params(state, 2)] == [i * 10 for i in range(N)]


async def test_a_replay_after_a_failed_page_creates_the_rest_and_nothing_twice():
    state, job_id = await job_after_stage_one("paged")
    state.fail_create_at = 1  # the second page's call fails: the message is abandoned
    broker = await handle(state, StageReady(job_id=job_id, job_type="paged", stage=2))
    assert len([t for t in state.tasks.values() if t.stage == 2]) == PAGE
    assert await broker.queue_depth("jobs") == 1  # back on the queue, for a redelivery
    await handle(state, StageReady(job_id=job_id, job_type="paged", stage=2))
    assert [p["from"] for p in stage_params(state, 2)] == [i * 10 for i in range(N)]
    view = await state.get_job(job_id)
    assert [s.task_count for s in view.stages] == [N, N]


async def test_a_stage_planned_for_longer_than_the_lock_keeps_its_message(caplog):
    state, job_id = await job_after_stage_one("paged")
    state.create_seconds = 0.25  # three pages: 0.75 s, with a lock of 0.3 s
    broker = await handle(state, StageReady(job_id=job_id, job_type="paged", stage=2), 0.3)
    # Completed, not redelivered: a lapsed lock would have left it queued
    # (complete refused) and handed it to a second planner meanwhile.
    assert await broker.queue_depth("jobs") == 0
    assert "lock" not in caplog.text
    assert len(state.creates) == 3


async def test_a_long_planning_holds_one_slot_not_the_other_jobs_messages():
    state, slow = await job_after_stage_one("paged")
    _, quick = await job_after_stage_one("paged", state, tag="quick")
    state.gates[slow] = asyncio.Event()  # the slow job's planning waits until released
    broker = MemoryBroker()
    stopping = asyncio.Event()
    running = asyncio.create_task(consumer(state, broker).run(stopping))
    for job_id in (slow, quick):
        body = StageReady(job_id=job_id, job_type="paged", stage=2).model_dump_json()
        await broker.send("jobs", [OutgoingMessage(job_id, body.encode())])
        await asyncio.sleep(0.1)
    # The quick job's stage was planned while the slow one's is still in hand.
    for _ in range(100):
        if len([t for t in state.tasks.values() if t.job_id == quick and t.stage == 2]) == N:
            break
        await asyncio.sleep(0.05)
    assert len([t for t in state.tasks.values() if t.job_id == quick and t.stage == 2]) == N
    assert not [t for t in state.tasks.values() if t.job_id == slow and t.stage == 2]
    state.gates[slow].set()
    await stop_when_drained(broker, stopping, running)
    assert len([t for t in state.tasks.values() if t.job_id == slow and t.stage == 2]) == N
    assert await broker.queue_depth("jobs") == 0


async def test_a_hook_that_blocks_for_seconds_stalls_neither_its_lock_nor_other_jobs(caplog):
    # The hook runs in a planning thread: the loop renews the hook's message
    # lock (0.3 s here, the hook takes 1.5 s) and plans another job meanwhile.
    state, slow = await job_after_stage_one("hook", hook_seconds=1.5)
    _, quick = await job_after_stage_one("paged", state)
    broker = MemoryBroker(lock_duration=0.3)
    stopping = asyncio.Event()
    running = asyncio.create_task(consumer(state, broker).run(stopping))
    for job_id, job_type in ((slow, "hook"), (quick, "paged")):
        body = StageReady(job_id=job_id, job_type=job_type, stage=2).model_dump_json()
        await broker.send("jobs", [OutgoingMessage(job_id, body.encode())])
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.4)  # the quick job's planning, while the hook still sleeps
    assert len([t for t in state.tasks.values() if t.job_id == quick and t.stage == 2]) == N
    assert not [t for t in state.tasks.values() if t.job_id == slow and t.stage == 2]
    await stop_when_drained(broker, stopping, running)
    # The hook's one task, planned once.
    [hooked] = [t for t in state.tasks.values() if t.job_id == slow and t.stage == 2]
    assert json.loads(hooked.parameters_json) == {"n": N}
    assert await broker.queue_depth("jobs") == 0
    assert "lock" not in caplog.text


async def test_stopping_hands_back_what_did_not_finish_within_the_drain():
    state, job_id = await job_after_stage_one("paged")
    state.gates[job_id] = asyncio.Event()  # never released: planning outlasts the drain
    broker = MemoryBroker()  # 30 s locks: only an abandon brings it back in time
    stopping = asyncio.Event()
    jobs = consumer(state, broker)
    jobs.drain_seconds = 0.2
    running = asyncio.create_task(jobs.run(stopping))
    body = StageReady(job_id=job_id, job_type="paged", stage=2).model_dump_json()
    await broker.send("jobs", [OutgoingMessage("m", body.encode())])
    await asyncio.sleep(0.3)
    stopping.set()
    await asyncio.wait_for(running, 5)
    [again] = await broker.receive("jobs", 1, max_wait=1.0)
    assert again.delivery_count == 2


async def test_a_planning_error_on_a_later_page_fails_the_job():
    state, job_id = await job_after_stage_one("paged", fail_at=4)
    await handle(state, StageReady(job_id=job_id, job_type="paged", stage=2))
    view = await state.get_job(job_id)
    assert view.status == "failed"
    assert "no plan for task 4" in view.error


async def test_a_job_without_an_aggregator_is_finalized_without_reading_its_results():
    state, job_id = await job_after_stage_one("paged")
    await handle(state, StageReady(job_id=job_id, job_type="paged", stage=2))
    await run_stage(state, job_id, 2, lambda i: {"w": i})
    state.calls.clear()
    await handle(state, FinalizeJob(job_id=job_id, job_type="paged"))
    assert state.calls == ["get_job", "complete_job"]
    view = await state.get_job(job_id)
    assert view.status == "completed" and view.result["total_tasks"] == 2 * N


async def test_an_aggregator_still_gets_every_result():
    state, job_id = await job_after_stage_one("aggregated")
    await handle(state, StageReady(job_id=job_id, job_type="aggregated", stage=2))
    await run_stage(state, job_id, 2, lambda i: {"w": i})
    await handle(state, FinalizeJob(job_id=job_id, job_type="aggregated"))
    view = await state.get_job(job_id)
    assert view.status == "completed" and view.result == {"sum": sum(range(N))}


async def test_a_stage_planned_from_all_results_reads_them_with_the_job_in_one_call():
    state, job_id = await job_after_stage_one("items")
    await handle(state, StageReady(job_id=job_id, job_type="items", stage=2))
    assert state.calls[0] == "job_and_stage_results" and "stage_results" not in state.calls
    # Whole-stage planning is still chunked when created.
    assert state.creates == [(N, [0, 1, 2]), (N, [3, 4, 5]), (N, [6, 7])]
    assert [p["item"] for p in stage_params(state, 2)] == [i * 10 for i in range(N)]


async def test_large_parameters_of_a_later_page_are_stored_under_their_own_task_index():
    blobs = MemoryBlobStore()
    payloads = StagePayloads(blobs, threshold_bytes=16)
    big = b'{"big": "' + b"x" * 64 + b'"}'
    wrapped = await payloads.wrap_parameters([b"{}", big], job_id="j", stage=2, first_index=6)
    assert wrapped[0] == b"{}"
    assert "job/j/stage/2/task/7/parameters" in wrapped[1].decode()
    assert await payloads.load(wrapped[1]) == json.loads(big)


@pytest.fixture(autouse=True)
def _clear_seen():
    seen.clear()
