"""The state-client contract: the gRPC adapter (a real state service on PostgreSQL)
and the in-memory one (what unit tests of the consumers use) must behave alike.

A concrete module subclasses `StateClientContract` and provides the fixture
`client` (a StateClient on an empty store).
"""

from __future__ import annotations

import asyncio
import json
import secrets

import pytest

from coremachine.shared.domain.ids import scheduled_job_id
from coremachine.shared.domain.jobs import (
    JobTypeDefinition,
    NewJob,
    NewTask,
    StagePlan,
    StagePolicy,
)
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.domain.schedules import Schedule
from coremachine.shared.domain.statuses import JobStatus, StageStatus, TaskStatus
from coremachine.shared.domain.tasks import (
    ProgressReport,
    TaskClaim,
    TaskLease,
    TaskOutcome,
    WorkerInfo,
)
from coremachine.shared.errors import Conflict, InvalidArgument, NotFound
from coremachine.shared.messages import StageReady
from coremachine.shared.state_client import StateClient

POLICY = StagePolicy(RetryPolicy(max_attempts=2, backoff_base_ms=10, backoff_max_ms=20))


def plan(n: int, policy: StagePolicy = POLICY, task_type: str = "noop") -> StagePlan:
    return StagePlan(
        n, tuple(NewTask(i, task_type, json.dumps({"i": i}).encode()) for i in range(n)), policy
    )


def new_job(stages: int = 2, first: StagePlan | None = None, **kw) -> NewJob:
    return NewJob(
        job_id=secrets.token_hex(32),
        job_type="contract",
        parameters_json=b'{"k": 1}',
        total_stages=stages,
        first_stage=first,
        **kw,
    )


def task_id(job: NewJob, stage: int, index: int) -> str:
    return f"{job.job_id}-s{stage}-{index}"


async def claim_all(client: StateClient, job: NewJob, stage: int, n: int, attempt: int = 1):
    results = await client.claim_tasks(
        "contract-worker", 30, [TaskClaim(task_id(job, stage, i), attempt) for i in range(n)]
    )
    assert all(r.task is not None for r in results), [r.reason for r in results]
    return [r.task for r in results if r.task is not None]


def ok(task, result: object = None) -> TaskOutcome:
    return TaskOutcome(task.task_id, task.lease_token, True, json.dumps(result or {}).encode())


class StateClientContract:
    async def test_create_job_is_idempotent_on_its_id(self, client: StateClient):
        job = new_job()
        first, created = await client.create_job(job)
        again, created_again = await client.create_job(job)
        assert created and not created_again
        assert first.job_id == again.job_id == job.job_id
        assert first.status == JobStatus.QUEUED and first.parameters == {"k": 1}
        assert first.total_stages == 2

    async def test_an_unknown_job_is_not_found(self, client: StateClient):
        with pytest.raises(NotFound):
            await client.get_job("0" * 64)

    async def test_a_job_created_with_its_first_stage_runs_it(self, client: StateClient):
        job = new_job(first=plan(3))
        view, _ = await client.create_job(job)
        assert view.status == JobStatus.PROCESSING
        [stage] = view.stages
        assert (stage.stage, stage.task_count, stage.remaining) == (1, 3, 3)

    async def test_creating_a_stage_again_creates_nothing(self, client: StateClient):
        job = new_job()
        await client.create_job(job)
        assert await client.create_stage_tasks(job.job_id, 1, plan(4)) == 4
        assert await client.create_stage_tasks(job.job_id, 1, plan(4)) == 0
        with pytest.raises(InvalidArgument):
            await client.create_stage_tasks(job.job_id, 1, plan(5))

    async def test_a_claim_is_granted_once_per_attempt(self, client: StateClient):
        job = new_job(first=plan(1))
        await client.create_job(job)
        tid = task_id(job, 1, 0)
        [granted] = await client.claim_tasks("w", 30, [TaskClaim(tid, 1)])
        assert granted.task is not None and granted.task.parameters_json
        assert json.loads(granted.task.parameters_json) == {"i": 0}
        [again] = await client.claim_tasks("w", 30, [TaskClaim(tid, 1)])
        [stale] = await client.claim_tasks("w", 30, [TaskClaim(tid, 2)])
        [unknown] = await client.claim_tasks("w", 30, [TaskClaim(f"{job.job_id}-s1-9", 1)])
        assert again.task is None and again.reason == "task_processing"
        assert stale.task is None and stale.reason == "stale_attempt"
        assert unknown.task is None and unknown.reason == "unknown_task"

    async def test_a_claim_carries_the_stage_policy(self, client: StateClient):
        policy = StagePolicy(
            RetryPolicy(),
            queue="gpu",
            task_timeout_ms=1500,
            heartbeat_timeout_ms=700,
            previous_results=True,
        )
        job = new_job(first=plan(1, policy))
        await client.create_job(job)
        [task] = await claim_all(client, job, 1, 1)
        assert (task.queue, task.task_timeout_ms, task.heartbeat_timeout_ms) == ("gpu", 1500, 700)
        assert task.previous_results
        view = await client.get_job(job.job_id)
        assert view.stages[0].queue == "gpu"

    async def test_an_outcome_counts_once_and_the_last_one_advances_the_stage(
        self, client: StateClient
    ):
        job = new_job(first=plan(2))
        await client.create_job(job)
        first, second = await claim_all(client, job, 1, 2)
        acks = await client.complete_tasks([ok(first, {"v": 1}), ok(first, {"v": 2})])
        assert [a.accepted for a in acks] == [True, False]  # a duplicate in the batch
        [stale] = await client.complete_tasks([ok(first, {"v": 3})])
        assert not stale.accepted
        view = await client.get_job(job.job_id)
        assert (view.stages[0].remaining, view.stages[0].completed) == (1, 1)
        [last] = await client.complete_tasks([ok(second, {"v": 2})])
        assert last.accepted and last.task_status == "completed"
        view = await client.get_job(job.job_id)
        assert view.stages[0].status == StageStatus.COMPLETED
        assert view.stage == 2 and view.stage_summaries["1"]["completed"] == 2
        results = await client.stage_results(job.job_id, 1)
        assert [(r.task_index, r.status, json.loads(r.result_json)) for r in results] == [
            (0, TaskStatus.COMPLETED, {"v": 1}),
            (1, TaskStatus.COMPLETED, {"v": 2}),
        ]
        read, with_results = await client.job_and_stage_results(job.job_id, 1)
        assert read.job_id == job.job_id and len(with_results) == 2

    async def test_stage_results_come_in_pages_by_task_index(
        self, client: StateClient, monkeypatch: pytest.MonkeyPatch
    ):
        # Pages of two rows inside the state service: a limit spans several.
        monkeypatch.setattr("coremachine.services.state.store.RESULTS_CHUNK", 2)
        job = new_job(stages=1, first=plan(7))
        await client.create_job(job)
        tasks = await claim_all(client, job, 1, 7)
        await client.complete_tasks([ok(t, {"i": t.task_index}) for t in tasks])

        async def page(from_index: int, limit: int) -> list[int]:
            rows = await client.stage_results(job.job_id, 1, from_index=from_index, limit=limit)
            assert [json.loads(r.result_json)["i"] for r in rows] == [r.task_index for r in rows]
            return [r.task_index for r in rows]

        assert await page(0, 0) == list(range(7))
        assert await page(1, 5) == [1, 2, 3, 4, 5]
        assert await page(4, 2) == [4, 5]
        assert await page(5, 10) == [5, 6]
        assert await page(7, 3) == []
        for field, kw in (("from_index", {"from_index": -1}), ("limit", {"limit": -1})):
            with pytest.raises(InvalidArgument) as raised:
                await client.stage_results(job.job_id, 1, **kw)  # type: ignore[arg-type]
            assert field in str(raised.value)

    async def test_a_retryable_failure_queues_the_next_attempt(self, client: StateClient):
        job = new_job(first=plan(1))
        await client.create_job(job)
        [task] = await claim_all(client, job, 1, 1)
        [ack] = await client.complete_tasks(
            [TaskOutcome(task.task_id, task.lease_token, False, error="flaky", retryable=True)]
        )
        assert ack.task_status == "retrying"
        [retry] = await claim_all(client, job, 1, 1, attempt=2)
        assert retry.attempt == 2

    async def test_exhausted_attempts_fail_the_job_and_cancel_the_rest(self, client: StateClient):
        job = new_job(first=plan(2))
        await client.create_job(job)
        first, second = await claim_all(client, job, 1, 2)
        [ack] = await client.complete_tasks(
            [TaskOutcome(first.task_id, first.lease_token, False, error="bad", retryable=False)]
        )
        assert ack.task_status == "failed"
        view = await client.get_job(job.job_id)
        assert view.status == JobStatus.FAILED and first.task_id in view.error
        renewal = await client.renew_leases(30, [TaskLease(second.task_id, second.lease_token)])
        assert renewal.lost == (second.task_id,) and renewal.cancelled == (second.task_id,)
        [failed] = await client.failed_tasks(job.job_id)
        assert (failed.task_id, failed.error) == (first.task_id, "bad")
        assert not await client.fail_job(job.job_id, "again")

    async def test_renewing_a_live_lease_keeps_it(self, client: StateClient):
        job = new_job(first=plan(1))
        await client.create_job(job)
        [task] = await claim_all(client, job, 1, 1)
        renewal = await client.renew_leases(30, [TaskLease(task.task_id, task.lease_token)])
        assert renewal.renewed == (task.task_id,) and not renewal.lost
        assert await client.release_tasks([TaskLease(task.task_id, task.lease_token)]) == [
            task.task_id
        ]
        await claim_all(client, job, 1, 1)  # released: the same attempt runs again

    async def test_the_job_completes_with_its_result_only_after_its_last_stage(
        self, client: StateClient
    ):
        job = new_job(stages=1, first=plan(1))
        await client.create_job(job)
        assert not await client.complete_job(job.job_id, b'{"early": true}')
        [task] = await claim_all(client, job, 1, 1)
        await client.complete_tasks([ok(task)])
        assert await client.complete_job(job.job_id, b'{"answer": 42}')
        view = await client.get_job(job.job_id)
        assert view.status == JobStatus.COMPLETED and view.result == {"answer": 42}

    async def test_a_default_result_job_completes_with_its_summary(self, client: StateClient):
        job = new_job(stages=1, first=plan(2), default_result=True)
        await client.create_job(job)
        tasks = await claim_all(client, job, 1, 2)
        await client.complete_tasks([ok(t) for t in tasks])
        view = await client.get_job(job.job_id)
        assert view.status == JobStatus.COMPLETED
        assert view.result["total_tasks"] == 2 and view.result["failed_tasks"] == []

    async def test_progress_of_a_running_task_shows_on_its_stage(self, client: StateClient):
        job = new_job(first=plan(2))
        await client.create_job(job)
        first, second = await claim_all(client, job, 1, 2)
        recorded = await client.report_progress(
            [
                ProgressReport(first.task_id, first.lease_token, 3, 10, "three of ten"),
                ProgressReport(second.task_id, "not-its-lease", 5, 10, "ignored"),
            ]
        )
        assert recorded == 1
        [stage] = (await client.get_job(job.job_id)).stages
        assert stage.last_progress is not None
        assert stage.last_progress["task_id"] == first.task_id
        assert stage.last_progress["message"] == "three of ten"
        assert stage.last_progress["current"] == 3

    async def test_a_message_for_an_unserved_definition_waits_until_one_registers(
        self, client: StateClient
    ):
        definition = secrets.token_hex(32)
        job = new_job(definition=definition)
        await client.create_job(job)
        body = StageReady(job_id=job.job_id, job_type="contract", stage=1, definition=definition)
        parked, reason = await client.park_job_message(
            job.job_id,
            "contract",
            definition,
            body.message_id,
            body.model_dump_json().encode(),
            "elsewhere",
        )
        assert parked and definition[:12] in reason
        assert definition[:12] in (await client.get_job(job.job_id)).waiting
        served = JobTypeDefinition("contract", definition, {"type": "object"}, {"stages": []})
        assert await client.register_orchestrator("o-1", "host", "1", [served], 30) == 1
        assert (await client.get_job(job.job_id)).waiting == ""
        # Served now: the next one is sent on at once, not parked.
        parked, _ = await client.park_job_message(
            job.job_id,
            "contract",
            definition,
            f"{job.job_id}:stage:2",
            body.model_copy(update={"stage": 2}).model_dump_json().encode(),
            "elsewhere",
        )
        assert not parked

    async def test_a_waiting_job_can_move_onto_another_definition(self, client: StateClient):
        old, new = secrets.token_hex(32), secrets.token_hex(32)
        job = new_job(definition=old)
        await client.create_job(job)
        body = StageReady(job_id=job.job_id, job_type="contract", stage=1, definition=old)
        await client.park_job_message(
            job.job_id, "contract", old, body.message_id, body.model_dump_json().encode(), "x"
        )
        rebased, released = await client.rebase_job(job.job_id, new, 2, False)
        assert released == 1 and rebased.definition == new and rebased.waiting == ""

    async def test_a_worker_heartbeat_is_accepted(self, client: StateClient):
        await client.heartbeat_worker(WorkerInfo("w-1", "host", ("tasks",), ("noop",), 4), 15)
        await client.heartbeat_worker(
            WorkerInfo("w-1", "host", ("tasks",), ("noop",), 4), 15, stopping=True
        )

    async def test_a_schedule_fires_each_tick_once_under_its_derived_job_id(
        self, client: StateClient
    ):
        schedule = await client.create_schedule(
            Schedule(name="every-second", job_type="contract", cron="* * * * * *")
        )
        assert schedule.next_fire_at is not None and schedule.uid
        with pytest.raises(Conflict):
            await client.create_schedule(
                Schedule(name="every-second", job_type="contract", cron="* * * * * *")
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            firings, wait = await client.claim_due_firings("orch-a", ["contract"], 10, 30)
            if firings:
                break
            assert loop.time() < deadline, "no tick fired"
            await asyncio.sleep(min(wait or 0.05, 0.2))
        [firing] = firings
        assert firing.kind == "tick" and firing.outcome == "pending"
        assert firing.job_id == scheduled_job_id(schedule.uid, firing.tick_at)
        assert firing.job_type == "contract"
        # Nobody else gets the same tick; recording it works once.
        again, _ = await client.claim_due_firings("orch-b", ["contract"], 10, 30)
        assert firing.tick_at not in [f.tick_at for f in again]
        assert await client.record_firing(firing, "submitted", firing.job_id)
        assert not await client.record_firing(firing, "submitted", firing.job_id)
        # Other job types' schedules are not handed out.
        assert (await client.claim_due_firings("orch-c", ["other"], 10, 30)) == ([], None)
        manual = await client.trigger_schedule("every-second", "orch-a", 30)
        assert manual.kind == "manual" and manual.job_id != firing.job_id
