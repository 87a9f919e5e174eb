"""Why is this job waiting: what holds a job that is not terminal, in words and fields.

Read-only and bounded: a handful of indexed queries on the job's rows, the
workers and the janitor's last run, and a scan of at most DEAD_LETTER_SCAN
dead letters per queue the job uses (oldest first; the result says how many
were scanned). Reasons, most important first:
- definition_unserved: a message parked for a definition no orchestrator serves;
- stage_not_planned / finalizing: the job waits for an orchestrator;
- queue_unserved: queued tasks on a queue no live worker consumes;
- retry_backoff: tasks waiting out their retry delay, and when they are due;
- waiting_for_worker: queued tasks on a live queue (workers are busy);
- lease_expired: running tasks whose lease expired, not reclaimed yet;
- running: the tasks running longest, and on which worker;
- dead_lettered: the job's messages in a dead-letter queue;
- janitor_not_sweeping: no janitor sweep finished for three intervals.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.admin import ids_of
from coremachine.services.state.sql import Q
from coremachine.services.state.store import StateStore
from coremachine.services.state.store_models import JobView
from coremachine.services.state.workers_store import WorkerStore
from coremachine.shared.broker import Broker
from coremachine.shared.domain.statuses import JobStatus, StageStatus

DEAD_LETTER_SCAN = 1000
LISTED = 10  # tasks listed per kind (retrying, running, expired)


@dataclass(slots=True)
class DiagnosedStage:
    stage: int
    planned: bool
    task_count: int = 0
    queued: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    queue: str = ""


@dataclass(slots=True)
class Reason:
    code: str
    message: str


@dataclass(slots=True)
class UnservedQueue:
    queue: str
    stage: int
    tasks_waiting: int


@dataclass(slots=True)
class RetryingTask:
    task_id: str
    task_index: int
    attempt: int
    due_at: dt.datetime | None
    last_error: str


@dataclass(slots=True)
class RunningTask:
    task_id: str
    task_index: int
    attempt: int
    worker_id: str
    worker_state: str
    started_at: dt.datetime | None
    running_seconds: float
    lease_expires_at: dt.datetime | None


@dataclass(slots=True)
class ExpiredLease:
    task_id: str
    task_index: int
    worker_id: str
    worker_state: str
    lease_expired_at: dt.datetime | None


@dataclass(slots=True)
class DeadLetterRef:
    queue: str
    sequence: str
    message_id: str
    task_id: str
    reason: str
    description: str


@dataclass(slots=True)
class JanitorSweep:
    holder: str = ""
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str = ""
    leases_reclaimed: int = 0
    stages_advanced: int = 0
    overdue: bool = True


@dataclass(slots=True)
class Diagnosis:
    view: JobView
    diagnosed_at: dt.datetime
    current_stage: DiagnosedStage
    definition_served: bool
    reasons: list[Reason] = field(default_factory=list)
    unserved_queues: list[UnservedQueue] = field(default_factory=list)
    retrying: list[RetryingTask] = field(default_factory=list)
    running: list[RunningTask] = field(default_factory=list)
    expired_leases: list[ExpiredLease] = field(default_factory=list)
    dead_letters: list[DeadLetterRef] = field(default_factory=list)
    dead_letters_scanned: int = 0
    janitor: JanitorSweep = field(default_factory=JanitorSweep)

    @property
    def summary(self) -> str:
        return "\n".join(r.message for r in self.reasons)


def _ago(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f} min"


class Diagnoser:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        store: StateStore,
        broker: Broker,
        workers: WorkerStore,
        janitor_interval: float,
    ) -> None:
        self.pool = pool
        self.store = store
        self.broker = broker
        self.workers = workers
        self.janitor_interval = janitor_interval

    async def diagnose(self, job_id: str) -> Diagnosis:
        view = await self.store.get_job(job_id)  # NotFound for an unknown job
        job = view.job
        now = dt.datetime.now(dt.UTC)
        default_queue = self.store.outbox.tasks_queue
        stage_row = next((s for s in view.stages if s.stage == job.stage), None)
        current = DiagnosedStage(stage=job.stage, planned=stage_row is not None)
        worker_states = {w.worker_id: w.state for w in await self.workers.list()}
        live_queues = await self.workers.live_queues()
        async with self.pool.connection() as conn:
            if stage_row is not None:
                cur = await conn.execute(
                    Q.count_stage_tasks, {"job_id": job_id, "stage": job.stage}
                )
                counts: dict[str, int] = dict(await cur.fetchall())
                current = DiagnosedStage(
                    stage=job.stage,
                    planned=True,
                    task_count=stage_row.task_count,
                    queued=counts.get("queued", 0),
                    processing=counts.get("processing", 0),
                    completed=counts.get("completed", 0),
                    failed=counts.get("failed", 0),
                    cancelled=counts.get("cancelled", 0),
                    queue=stage_row.queue or default_queue,
                )
            cur = await conn.execute(Q.definition_served, {"definition": job.definition})
            row = await cur.fetchone()
            served = bool(row and row[0]) if job.definition else True
            if not job.definition:
                cur = await conn.execute(Q.live_orchestrators)
                row = await cur.fetchone()
                served = bool(row and row[0])
            cur = await conn.execute(
                Q.retrying_tasks, {"job_id": job_id, "stage": job.stage, "limit": LISTED}
            )
            retrying = [
                RetryingTask(task_id, index, attempt, due, error or "")
                for task_id, index, attempt, error, due in await cur.fetchall()
            ]
            cur = await conn.execute(Q.running_tasks, {"job_id": job_id, "limit": 5 * LISTED})
            running_rows = await cur.fetchall()
            retried_ids = [r[0] for r in running_rows if r[6]]
            starts: dict[str, dt.datetime] = {}
            if retried_ids:
                cur = await conn.execute(
                    Q.attempt_starts, {"job_id": job_id, "task_ids": retried_ids}
                )
                starts = {task_id: at for task_id, at in await cur.fetchall()}
            cur = await conn.execute(Q.last_janitor_run)
            sweep = await cur.fetchone()
        diagnosis = Diagnosis(view, now, current, served, retrying=retrying)
        diagnosis.janitor = self._janitor(sweep, now)
        running = []
        for task_id, index, attempt, owner, started, expires, _retried in running_rows:
            started = starts.get(task_id, started)
            state = worker_states.get(owner, "unknown")
            if expires is not None and expires < now:
                diagnosis.expired_leases.append(ExpiredLease(task_id, index, owner, state, expires))
            seconds = (now - started).total_seconds() if started else 0.0
            running.append(
                RunningTask(task_id, index, attempt, owner, state, started, seconds, expires)
            )
        running.sort(key=lambda r: -r.running_seconds)
        diagnosis.running = running[:LISTED]
        diagnosis.expired_leases = diagnosis.expired_leases[:LISTED]
        await self._dead_letters(diagnosis, {s.queue or default_queue for s in view.stages})
        if not JobStatus(job.status).is_terminal:
            self._reasons(diagnosis, live_queues, default_queue, now)
        else:
            diagnosis.reasons.append(
                Reason("terminal", f"the job is {job.status}: nothing holds it")
            )
        return diagnosis

    def _janitor(self, sweep: Any, now: dt.datetime) -> JanitorSweep:
        if sweep is None:
            return JanitorSweep()
        holder, started, finished, actions, error = sweep
        actions = actions if isinstance(actions, dict) else json.loads(actions or "{}")
        overdue = finished is None or (now - finished).total_seconds() > 3 * self.janitor_interval
        return JanitorSweep(
            holder,
            started,
            finished,
            error or "",
            int(actions.get("leases_reclaimed", 0)),
            int(actions.get("stages_advanced", 0)),
            overdue,
        )

    async def _dead_letters(self, diagnosis: Diagnosis, task_queues: set[str]) -> None:
        job_id = diagnosis.view.job.job_id
        queues = [self.store.outbox.jobs_queue, *sorted(task_queues)]
        for queue in dict.fromkeys(queues):
            letters = await self.broker.list_dead_letters(queue, DEAD_LETTER_SCAN)
            diagnosis.dead_letters_scanned = max(diagnosis.dead_letters_scanned, len(letters))
            for letter in letters:
                letter_job, task_id = ids_of(letter)
                if letter_job == job_id:
                    diagnosis.dead_letters.append(
                        DeadLetterRef(
                            queue,
                            letter.sequence,
                            letter.message_id,
                            task_id,
                            letter.reason,
                            letter.description,
                        )
                    )

    def _reasons(
        self, d: Diagnosis, live_queues: set[str], default_queue: str, now: dt.datetime
    ) -> list[Reason]:
        job = d.view.job
        add = d.reasons.append
        stage = d.current_stage
        if job.waiting:
            add(Reason("definition_unserved", job.waiting))
        stage_row = next((s for s in d.view.stages if s.stage == job.stage), None)
        if stage_row is None:
            who = (
                "an orchestrator"
                if d.definition_served
                else "an orchestrator, and none serving its definition is running"
            )
            add(
                Reason(
                    "stage_not_planned",
                    f"stage {job.stage} of {job.total_stages} has no tasks yet: its"
                    f" 'stage ready' message waits in queue {self.store.outbox.jobs_queue!r}"
                    f" for {who}",
                )
            )
        elif stage_row.status != StageStatus.RUNNING and job.stage >= job.total_stages:
            add(
                Reason(
                    "finalizing",
                    "every stage is done: the job waits for an orchestrator to aggregate its"
                    " results" + ("" if d.definition_served else " (none serving it is running)"),
                )
            )
        due_later = [r for r in d.retrying if r.due_at is not None and r.due_at > now]
        waiting = stage.queued - len(due_later)
        if stage_row is not None and stage_row.status == StageStatus.RUNNING and stage.queued:
            if stage.queue not in live_queues:
                d.unserved_queues.append(UnservedQueue(stage.queue, stage.stage, stage.queued))
                add(
                    Reason(
                        "queue_unserved",
                        f"{stage.queued} task(s) of stage {stage.stage} wait on queue"
                        f" {stage.queue!r}, which no live worker consumes",
                    )
                )
            elif waiting > 0:
                add(
                    Reason(
                        "waiting_for_worker",
                        f"{waiting} task(s) of stage {stage.stage} wait on queue"
                        f" {stage.queue!r} for a free worker",
                    )
                )
        if due_later:
            first = min(due_later, key=lambda r: r.due_at or now)
            assert first.due_at is not None
            add(
                Reason(
                    "retry_backoff",
                    f"{len(due_later)} task(s) wait out their retry backoff; the next, task"
                    f" {first.task_id} (attempt {first.attempt}), is due in"
                    f" {_ago((first.due_at - now).total_seconds())}"
                    + (f" (it failed with: {first.last_error[:200]})" if first.last_error else ""),
                )
            )
        for lease in d.expired_leases:
            assert lease.lease_expired_at is not None
            add(
                Reason(
                    "lease_expired",
                    f"task {lease.task_id}'s lease expired"
                    f" {_ago((now - lease.lease_expired_at).total_seconds())} ago (worker"
                    f" {lease.worker_id or '?'} is {lease.worker_state}); the janitor reclaims"
                    f" it at its next sweep (every {self.janitor_interval:g}s)",
                )
            )
        if d.running:
            top = d.running[0]
            add(
                Reason(
                    "running",
                    f"{stage.processing or len(d.running)} task(s) running; the longest, task"
                    f" {top.task_id} (index {top.task_index}, attempt {top.attempt}), for"
                    f" {_ago(top.running_seconds)} on worker {top.worker_id or '?'}"
                    f" ({top.worker_state})",
                )
            )
        for letter in d.dead_letters:
            what = f"task {letter.task_id}" if letter.task_id else "a job message"
            add(
                Reason(
                    "dead_lettered",
                    f"{what} was dead-lettered on queue {letter.queue!r} ({letter.reason}:"
                    f" {letter.description[:200]}); replay or fail it with"
                    " POST /api/monitor/poison",
                )
            )
        if d.janitor.overdue:
            last = (
                f"its last sweep finished {_ago((now - d.janitor.finished_at).total_seconds())} ago"
                if d.janitor.finished_at
                else "it never finished a sweep"
            )
            add(
                Reason(
                    "janitor_not_sweeping",
                    f"the janitor is not sweeping ({last}): expired leases and stalled stages"
                    " are not repaired until a state service leads it",
                )
            )
        return d.reasons
