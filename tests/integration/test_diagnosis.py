"""Why is this job waiting: each reason of the diagnosis, created for real on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest

from coremachine.services.state.definitions_store import DefinitionStore
from coremachine.services.state.diagnosis import Diagnoser
from coremachine.services.state.janitor import Janitor
from coremachine.services.state.outbox import OutboxRelay
from coremachine.services.state.store_models import Claim
from coremachine.services.state.workers_store import WorkerStore
from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.postgres import PostgresBroker
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.domain.tasks import WorkerInfo
from tests.integration.state_fixtures import claim_stage, fail, make_job, make_stage, new_job_id, ok


@pytest.fixture
async def broker(db_url):
    broker = await PostgresBroker(db_url, lock_duration=30).open()
    yield broker
    await broker.close()


@pytest.fixture
def workers(pool) -> WorkerStore:
    return WorkerStore(pool)


@pytest.fixture
def diagnoser(pool, store, broker, workers) -> Diagnoser:
    return Diagnoser(pool, store, broker, workers, janitor_interval=5.0)


async def live_worker(workers: WorkerStore, worker_id: str, queues=("tasks",)) -> None:
    await workers.heartbeat(
        WorkerInfo(worker_id, "host-1", tuple(queues), ("noop",), concurrency=4), 60, False
    )


def codes(diagnosis) -> list[str]:
    return [r.code for r in diagnosis.reasons]


async def test_tasks_on_a_queue_no_live_worker_consumes(store, diagnoser, workers):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 3)
    diagnosis = await diagnoser.diagnose(job_id)
    assert codes(diagnosis)[0] == "queue_unserved"
    assert "3 task(s) of stage 1 wait on queue 'tasks', which no live worker consumes" in (
        diagnosis.summary
    )
    assert [(u.queue, u.stage, u.tasks_waiting) for u in diagnosis.unserved_queues] == [
        ("tasks", 1, 3)
    ]
    stage = diagnosis.current_stage
    assert (stage.planned, stage.task_count, stage.queued, stage.queue) == (True, 3, 3, "tasks")
    # A worker of another pool does not serve it; one of this pool does.
    await live_worker(workers, "gpu-worker", queues=("gpu",))
    assert "queue_unserved" in codes(await diagnoser.diagnose(job_id))
    await live_worker(workers, "cpu-worker")
    served = await diagnoser.diagnose(job_id)
    assert "queue_unserved" not in codes(served) and "waiting_for_worker" in codes(served)


async def test_tasks_in_retry_backoff_and_when_they_are_due(store, diagnoser, workers):
    await live_worker(workers, "w1")
    job_id = await make_job(store)
    slow_retry = RetryPolicy(max_attempts=3, backoff_base_ms=60_000, backoff_max_ms=120_000)
    await make_stage(store, job_id, 1, 2, retry=slow_retry)
    claimed = await claim_stage(store, job_id, 1)
    before = dt.datetime.now(dt.UTC)
    await store.complete_tasks([fail(*claimed[0], error="disk full")])
    diagnosis = await diagnoser.diagnose(job_id)
    [retrying] = diagnosis.retrying
    assert (retrying.task_id, retrying.attempt, retrying.last_error) == (
        claimed[0][0],
        2,
        "disk full",
    )
    assert retrying.due_at is not None and retrying.due_at > before + dt.timedelta(seconds=20)
    assert "retry_backoff" in codes(diagnosis)
    [reason] = [r for r in diagnosis.reasons if r.code == "retry_backoff"]
    assert claimed[0][0] in reason.message and "disk full" in reason.message
    # The other task still runs, on its worker.
    assert [r.task_id for r in diagnosis.running] == [claimed[1][0]]


async def test_the_longest_running_tasks_and_their_workers(store, diagnoser, workers):
    await live_worker(workers, "w-live")
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 2)
    tasks, _ = await store.list_tasks(job_id, 1, None, 10, "")
    await store.claim_tasks("w-live", 60, [Claim(tasks[0].task_id, 1)])
    await store.claim_tasks("w-never-seen", 60, [Claim(tasks[1].task_id, 1)])
    diagnosis = await diagnoser.diagnose(job_id)
    assert [(r.task_id, r.worker_id, r.worker_state) for r in diagnosis.running] == [
        (tasks[0].task_id, "w-live", "live"),
        (tasks[1].task_id, "w-never-seen", "unknown"),
    ]
    assert all(r.started_at is not None and r.running_seconds >= 0 for r in diagnosis.running)
    [reason] = [r for r in diagnosis.reasons if r.code == "running"]
    assert "2 task(s) running" in reason.message and "w-live" in reason.message


async def test_expired_leases_not_yet_reclaimed_then_the_janitor_sweep(
    pool, store, broker, diagnoser, workers
):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 1)
    tasks, _ = await store.list_tasks(job_id, 1, None, 10, "")
    await store.claim_tasks("w-dead", 1, [Claim(tasks[0].task_id, 1)])
    diagnosis = await diagnoser.diagnose(job_id)
    assert "lease_expired" not in codes(diagnosis)
    assert "janitor_not_sweeping" in codes(diagnosis)  # no sweep ever finished
    deadline = time.monotonic() + 10
    while not (diagnosis := await diagnoser.diagnose(job_id)).expired_leases:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    [lease] = diagnosis.expired_leases
    assert (lease.task_id, lease.worker_id, lease.worker_state) == (
        tasks[0].task_id,
        "w-dead",
        "unknown",
    )
    assert "lease_expired" in codes(diagnosis)
    janitor = Janitor(
        pool,
        store,
        OutboxRelay(pool, broker),
        interval=5,
        stall_seconds=30,
        job_deadline_seconds=86400,
        holder="test-janitor",
    )
    await janitor.sweep()
    swept = await diagnoser.diagnose(job_id)
    assert swept.expired_leases == [] and "lease_expired" not in codes(swept)
    assert "janitor_not_sweeping" not in codes(swept)
    assert (swept.janitor.holder, swept.janitor.leases_reclaimed, swept.janitor.overdue) == (
        "test-janitor",
        1,
        False,
    )
    assert [r.attempt for r in swept.retrying] == [2]


async def test_dead_lettered_messages_of_the_job(store, broker, diagnoser):
    job_id = await make_job(store)
    await make_stage(store, job_id, 1, 1)
    tasks, _ = await store.list_tasks(job_id, 1, None, 10, "")
    other = new_job_id()
    await broker.send(
        "tasks",
        [
            OutgoingMessage(
                "poison-1", b"not json", {"job_id": job_id, "task_id": tasks[0].task_id}
            ),
            OutgoingMessage("poison-2", b"not json", {"job_id": other}),
        ],
    )
    for message in await broker.receive("tasks", 10, max_wait=1):
        await broker.dead_letter(message, "UndecodableBody", "bad JSON")
    diagnosis = await diagnoser.diagnose(job_id)
    assert [(d.message_id, d.task_id, d.reason) for d in diagnosis.dead_letters] == [
        ("poison-1", tasks[0].task_id, "UndecodableBody")
    ]
    assert diagnosis.dead_letters_scanned == 2
    assert "dead_lettered" in codes(diagnosis)


async def test_a_definition_no_orchestrator_serves(pool, store, diagnoser):
    job_id = new_job_id()
    definition = "ab" * 32
    await store.create_job(job_id, "hello_world", {}, 2, {}, definition=definition)
    diagnosis = await diagnoser.diagnose(job_id)
    assert not diagnosis.current_stage.planned and not diagnosis.definition_served
    assert codes(diagnosis)[0] == "stage_not_planned"
    parked, reason = await DefinitionStore(pool, store.outbox).park(
        job_id, "hello_world", definition, f"{job_id}:stage:1", b"{}"
    )
    assert parked
    diagnosis = await diagnoser.diagnose(job_id)
    assert codes(diagnosis)[0] == "definition_unserved"
    assert diagnosis.reasons[0].message == reason
    assert "no running orchestrator serves the definition" in diagnosis.summary


async def test_a_terminal_job_is_held_by_nothing(store, diagnoser):
    job_id = await make_job(store, total_stages=1)
    await make_stage(store, job_id, 1, 1)
    claimed = await claim_stage(store, job_id, 1)
    await store.complete_tasks([ok(*claimed[0])])
    await store.complete_job(job_id, {"done": True})
    diagnosis = await diagnoser.diagnose(job_id)
    assert codes(diagnosis) == ["terminal"]
