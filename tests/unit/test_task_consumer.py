"""The worker's consumer on the in-memory broker and state client: what a
handler sees, how each message is settled on its own, timeouts, heartbeats,
cancellation and progress."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from coremachine.app import App, TaskContext
from coremachine.app._registry import Registry
from coremachine.services.worker.claim_check import TaskPayloads
from coremachine.services.worker.consumer import TaskConsumer
from coremachine.shared.blobstores.memory import MemoryBlobStore
from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.memory import MemoryBroker
from coremachine.shared.domain.ids import task_id_for
from coremachine.shared.domain.jobs import NewJob, NewTask, StagePlan, StagePolicy
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.domain.statuses import JobStatus, TaskStatus
from coremachine.shared.errors import InvalidArgument
from coremachine.shared.messages import TaskMessage
from coremachine.shared.state_clients.memory import InMemoryStateClient

JOB_ID = "c" * 64
DEADLINE = 10.0


def policy(**kw: Any) -> StagePolicy:
    return StagePolicy(RetryPolicy(max_attempts=2, backoff_base_ms=1, backoff_max_ms=2), **kw)


class Harness:
    def __init__(self, handler: Callable[..., Any], n: int = 1, **stage: Any) -> None:
        self.broker = MemoryBroker(lock_duration=30)
        self.state = InMemoryStateClient()
        self.n = n
        self.stage_policy = policy(**stage)
        app = App("unit")
        app.task("work")(handler)
        self.consumer = TaskConsumer(
            self.broker,
            ["tasks"],
            self.state,
            Registry([app]).handlers(),
            worker_id="unit",
            concurrency=8,
            receive_batch=8,
            completion_batch=8,
            lease_seconds=30,
            lock_seconds=1.5,  # lease loop every 0.5 s
            shutdown_grace=0.5,
            blobs=MemoryBlobStore(),
            payloads=TaskPayloads(MemoryBlobStore()),
        )

    async def start(self) -> None:
        tasks = tuple(NewTask(i, "work", json.dumps({"i": i}).encode()) for i in range(self.n))
        await self.state.create_job(
            NewJob(
                JOB_ID,
                "unit",
                b"{}",
                1,
                first_stage=StagePlan(self.n, tasks, self.stage_policy),
                default_result=True,  # no orchestrator here to finalize it
            )
        )
        await self.flush()

    async def flush(self) -> None:
        """Sends the task messages the state service would have sent."""
        sent, self.state.sent = self.state.sent, []
        await self.broker.send(
            "tasks",
            [
                OutgoingMessage(
                    f"{m.task_id}:{m.attempt}",
                    TaskMessage(
                        task_id=m.task_id, job_id=m.job_id, task_type="work", attempt=m.attempt
                    )
                    .model_dump_json()
                    .encode(),
                )
                for m in sent
                if m.kind == "task"
            ],
        )

    def task(self, index: int = 0):
        return self.state.tasks[task_id_for(JOB_ID, 1, index)]

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.01)
            await self.flush()  # retries queue new messages


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Harness], Any]]:
    started: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def run(h: Harness) -> Harness:
        await h.start()
        stopping = asyncio.Event()
        started.append((stopping, asyncio.create_task(h.consumer.run(stopping))))
        return h

    yield run
    for stopping, task in started:
        stopping.set()
        await asyncio.wait_for(task, 10)


async def test_a_sync_handler_runs_in_a_thread_with_its_context(running):
    seen: list[tuple[str, int, str, int]] = []

    def work(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        seen.append((ctx.task_id, ctx.attempt, ctx.queue, params["i"]))
        assert threading.current_thread() is not threading.main_thread()
        ctx.logger.info("working")  # carries the ids; must not raise
        return {"double": params["i"] * 2}

    h = await running(Harness(work, n=3))
    await h.until(lambda: h.state.jobs[JOB_ID].status == JobStatus.COMPLETED, "the job")
    assert sorted(s[3] for s in seen) == [0, 1, 2]
    assert {s[2] for s in seen} == {"tasks"} and {s[1] for s in seen} == {1}
    assert json.loads(h.task(2).result_json) == {"double": 4}


async def test_an_async_handler_that_takes_only_params_runs_on_the_loop(running):
    async def work(params: dict[str, Any]) -> int:
        assert threading.current_thread() is threading.main_thread()
        return params["i"]

    h = await running(Harness(work, n=2))
    await h.until(lambda: h.state.jobs[JOB_ID].status == JobStatus.COMPLETED, "the job")


async def test_a_timed_out_attempt_fails_retryably_and_the_next_one_runs(running):
    calls: list[int] = []

    async def work(params: dict[str, Any], ctx: TaskContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            await asyncio.sleep(30)
        return "second time lucky"

    h = await running(Harness(work, task_timeout_ms=200))
    await h.until(lambda: h.task().status == TaskStatus.COMPLETED, "the retry")
    assert calls == [1, 2]
    assert h.task().attempt == 2


async def test_a_task_that_stops_heartbeating_is_given_up_on(running):
    async def work(params: dict[str, Any], ctx: TaskContext) -> str:
        if ctx.attempt == 1:
            ctx.heartbeat()
            await asyncio.sleep(30)  # hung: no more heartbeats
        else:
            for _ in range(5):
                ctx.heartbeat()
                await asyncio.sleep(0.1)
        return "done"

    h = await running(Harness(work, heartbeat_timeout_ms=400))
    await h.until(lambda: h.task().status == TaskStatus.COMPLETED, "the second attempt")
    assert h.task().attempt == 2
    # The heartbeating second attempt ran longer than the timeout and was kept.


async def test_a_cancelled_job_signals_its_running_handlers(running):
    stopped = asyncio.Event()

    async def work(params: dict[str, Any], ctx: TaskContext) -> str:
        assert await ctx.wait_cancelled(timeout=DEADLINE), "never told the job was cancelled"
        assert ctx.is_cancelled
        stopped.set()
        return "stopped early"

    h = await running(Harness(work))
    await h.until(lambda: h.task().status == TaskStatus.PROCESSING, "the claim")
    await h.state.fail_job(JOB_ID, "cancelled by the test")
    await asyncio.wait_for(stopped.wait(), DEADLINE)
    await h.until(lambda: not h.consumer.in_flight, "the slot to free")
    assert h.task().status == TaskStatus.CANCELLED  # the late outcome changed nothing


async def test_progress_reaches_the_stage_at_most_once_a_second_latest_wins(running):
    release = threading.Event()

    def work(params: dict[str, Any], ctx: TaskContext) -> str:
        for step in range(1, 6):
            ctx.progress(step, 5, f"step {step}")
        release.wait(DEADLINE)
        return "done"

    h = await running(Harness(work))
    await h.until(
        lambda: (h.task().progress or {}).get("current") == 5, "the latest progress report"
    )
    stage = h.state.jobs[JOB_ID].stages[1]
    assert stage.last_progress is not None and stage.last_progress["message"] == "step 5"
    release.set()
    await h.until(lambda: h.task().status == TaskStatus.COMPLETED, "the task")


async def test_undecodable_and_unknown_messages_are_settled_alone(running):
    h = await running(Harness(lambda params: "ok", n=1))
    good_id = task_id_for(JOB_ID, 1, 0)
    await h.broker.send(
        "tasks",
        [
            OutgoingMessage("garbage", b"\xff\xfe not json"),
            OutgoingMessage(
                "huge-attempt",
                json.dumps(
                    {"task_id": good_id, "job_id": JOB_ID, "task_type": "work", "attempt": 2**40}
                ).encode(),
            ),
            OutgoingMessage(
                "nul-id",
                json.dumps(
                    {
                        "task_id": good_id + "\x00",
                        "job_id": JOB_ID,
                        "task_type": "work",
                        "attempt": 1,
                    }
                ).encode(),
            ),
            OutgoingMessage(
                "no-such-task",
                json.dumps(
                    {
                        "task_id": task_id_for(JOB_ID, 1, 99),
                        "job_id": JOB_ID,
                        "task_type": "work",
                        "attempt": 1,
                    }
                ).encode(),
            ),
        ],
    )
    await h.until(lambda: h.task().status == TaskStatus.COMPLETED, "the healthy task")

    async def reasons() -> dict[str, str]:
        return {d.message_id: d.reason for d in await h.broker.list_dead_letters("tasks")}

    deadline = time.monotonic() + DEADLINE
    while len(await reasons()) < 4:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert await reasons() == {
        "garbage": "UndecodableBody",
        "huge-attempt": "UndecodableBody",
        "nul-id": "UndecodableBody",
        "no-such-task": "UnknownTask",
    }


async def test_a_task_type_not_run_here_is_handed_back_then_dead_lettered(running):
    h = Harness(lambda params: "ok")
    h.consumer.unknown_task_deliveries = 2
    h = await running(h)
    other = TaskMessage(
        task_id=task_id_for(JOB_ID, 1, 5), job_id=JOB_ID, task_type="gpu_only", attempt=1
    )
    await h.broker.send("tasks", [OutgoingMessage("other", other.model_dump_json().encode())])
    deadline = time.monotonic() + DEADLINE
    while not await h.broker.list_dead_letters("tasks"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    [letter] = await h.broker.list_dead_letters("tasks")
    assert letter.reason == "UnknownTaskType" and letter.delivery_count == 2
    assert "gpu_only" in letter.description


async def test_a_batch_the_state_service_refuses_is_claimed_one_by_one(running):
    h = Harness(lambda params: "ok", n=3)
    claim = h.state.claim_tasks
    poisoned = task_id_for(JOB_ID, 1, 1)

    async def refusing(worker_id, lease_seconds, claims):
        if any(c.task_id == poisoned for c in claims):
            raise InvalidArgument("invalid value: refused")
        return await claim(worker_id, lease_seconds, claims)

    h.state.claim_tasks = refusing  # type: ignore[method-assign]
    h = await running(h)
    await h.until(
        lambda: h.task(0).status == h.task(2).status == TaskStatus.COMPLETED, "the healthy two"
    )
    deadline = time.monotonic() + DEADLINE
    while not await h.broker.list_dead_letters("tasks"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    [letter] = await h.broker.list_dead_letters("tasks")
    assert letter.reason == "Rejected" and letter.message_id == f"{poisoned}:1"


async def test_a_result_that_is_not_json_fails_the_task_for_good(running):
    h = await running(Harness(lambda params: {"not json": {1, 2}}))
    await h.until(lambda: h.task().status == TaskStatus.FAILED, "the failure")
    assert "not JSON serializable" in h.task().error
    assert h.task().attempt == 1  # permanent: no retry
