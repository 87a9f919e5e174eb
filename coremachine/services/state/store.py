"""The state service's operations on PostgreSQL: one transaction each.

Every operation that implies a message writes it to the outbox in its own
transaction (see outbox.py) and then pokes the relay. Lock order is always
jobs row -> job_stages rows -> tasks rows, which keeps concurrent batches
free of deadlocks.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row

from coremachine.services.state.barrier import cancel_unfinished, evaluate_stage, fail_job_locked
from coremachine.services.state.events import JOB_END_EVENTS, NewEvent, append_events
from coremachine.services.state.flow import (
    START_TIME,
    after_job_end,
    held_reason,
    release_job_slots,
    start_or_hold,
    sweep_holds,
    upsert_rate_limit,
)
from coremachine.services.state.job_traces import creating, job_event, publishing
from coremachine.services.state.locks import (
    fetch_job,
    lock_job,
    locked_stage,
)
from coremachine.services.state.rows import EventRow, JobRow, StageRow
from coremachine.services.state.sql import Q
from coremachine.services.state.store_models import (
    EventsPage,
    JobStart,
    JobView,
    NewTaskSpec,
    StagePolicy,
    StageResult,
    StageTasks,
)
from coremachine.services.state.task_store import MAX_LIST_LIMIT, TaskStore
from coremachine.services.state.workers_store import unserved_queue_reason
from coremachine.shared.domain.ids import task_id_for
from coremachine.shared.domain.statuses import JobStatus, StageStatus
from coremachine.shared.errors import Conflict, InvalidArgument, NotFound
from coremachine.shared.pg_json import records_with_raw

log = logging.getLogger(__name__)

RESULTS_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class CreatedTasks:
    count: int
    stage_completed: bool
    # Stage 1's first chunk: the job and stage rows as this transaction left them.
    view: JobView | None


class StateStore(TaskStore):
    """Every state operation, one transaction each: jobs and stages here,
    task claims and outcomes in TaskStore."""

    # -- jobs ------------------------------------------------------------------

    async def create_job(
        self,
        job_id: str,
        job_type: str,
        parameters: dict[str, Any],
        total_stages: int,
        metadata: dict[str, Any],
        first_stage: StageTasks | None = None,
        default_result: bool = False,
        definition: str = "",
        start: JobStart = JobStart(),
    ) -> tuple[JobView, bool]:
        """Creates the job; idempotent on job_id (a resubmit creates nothing).

        With `first_stage` (planned by the orchestrator at submit) stage 1's
        tasks and their messages are created in the job's transaction;
        without, the job gets a "stage 1 ready" message and the orchestrator
        plans stage 1 when it arrives. With `default_result` the job's result is
        the default summary, recorded when its last stage completes (no
        "finalize" message). `start` may hold the job before stage 1: until
        its not_before (a "stage 1 ready" message scheduled for then), or
        until its type has a running slot (flow.py).
        """
        if total_stages < 1:
            raise InvalidArgument("total_stages must be at least 1", "total_stages")
        if first_stage is not None:
            _check_task_indexes(first_stage.total_tasks, first_stage.tasks)
        with creating(job_id, job_type) as trace_context:
            job, view = await self._insert_job(
                job_id,
                job_type,
                parameters,
                total_stages,
                metadata,
                first_stage,
                default_result,
                definition,
                trace_context,
                start,
            )
        if job is None:
            return await self.get_job(job_id), False  # a resubmit: the job as it is
        self.metrics.jobs_created.labels(job_type).inc()
        self._poke_relay()
        # The rows the statements returned are the job as committed; an empty
        # first stage completed at once and changed them: read it back then.
        return view or await self.get_job(job_id), True

    async def _insert_job(
        self,
        job_id: str,
        job_type: str,
        parameters: dict[str, Any],
        total_stages: int,
        metadata: dict[str, Any],
        first_stage: StageTasks | None,
        default_result: bool,
        definition: str,
        trace_context: str | None,
        start: JobStart,
    ) -> tuple[JobRow | None, JobView | None]:
        """create_job's transaction: the job row (None if it existed) and its view."""
        async with self._transaction() as conn:
            cur = conn.cursor(row_factory=class_row(JobRow))
            await cur.execute(
                Q.insert_job,
                {
                    "job_id": job_id,
                    "job_type": job_type,
                    "parameters": json.dumps(parameters),
                    "total_stages": total_stages,
                    "metadata": json.dumps(metadata),
                    "default_result": default_result,
                    "processing": first_stage is not None,
                    "definition": definition,
                    "trace_context": trace_context,
                    "priority": start.priority,
                    "not_before": start.not_before,
                    "max_running": start.max_running,
                    "flow_limited": start.flow_limited,
                },
            )
            job = await cur.fetchone()
            view: JobView | None = None
            if job is not None:
                events = [NewEvent(job_id, "job_created", data={"job_type": job_type})]
                if start.not_before is not None or start.max_running is not None:
                    job = await start_or_hold(conn, job, events)
                view = JobView(job, [], job.waiting or "")
                if job.held == START_TIME:
                    with publishing(trace_context, self.outbox.jobs_queue, 1) as trace:
                        await self.outbox.write(
                            conn,
                            [
                                self.outbox.stage_ready(
                                    job_id,
                                    job_type,
                                    1,
                                    definition=definition,
                                    priority=job.priority,
                                    scheduled_at=job.not_before,
                                    trace=trace,
                                )
                            ],
                        )
                elif job.held is not None:
                    pass  # a slot of its type frees: flow.release_job_slots sends stage 1
                elif first_stage is None:
                    with publishing(trace_context, self.outbox.jobs_queue, 1) as trace:
                        await self.outbox.write(
                            conn,
                            [
                                self.outbox.stage_ready(
                                    job_id,
                                    job_type,
                                    1,
                                    definition=definition,
                                    priority=job.priority,
                                    trace=trace,
                                )
                            ],
                        )
                else:
                    # The row inserted above is this transaction's: already locked.
                    created = await self._create_stage_tasks_locked(
                        conn,
                        job,
                        1,
                        first_stage.total_tasks,
                        first_stage.tasks,
                        first_stage.policy,
                        events,
                    )
                    view = created.view
                await append_events(conn, events)
        return job, view

    async def get_job(self, job_id: str) -> JobView:
        # The queries leave before any answer is awaited (pipeline mode: one
        # round trip; not used for longer transactions, where psycopg's
        # pipeline polling costs more CPU than the round trips it saves).
        async with self.pool.connection() as conn, conn.pipeline():
            job_cur = conn.cursor(row_factory=class_row(JobRow))
            stage_cur = conn.cursor(row_factory=class_row(StageRow))
            queues_cur = conn.cursor()
            held_cur = conn.cursor()
            await job_cur.execute(Q.get_job, {"job_id": job_id})
            await stage_cur.execute(Q.job_stages, {"job_id": job_id})
            await queues_cur.execute(Q.live_queues)
            await held_cur.execute(Q.held_tasks_of_job, {"job_id": job_id})
            job = await job_cur.fetchone()
            if job is None:
                raise NotFound(f"job {job_id} not found")
            stages = await stage_cur.fetchall()
            live = {row[0] for row in await queues_cur.fetchall()}
            held = "; ".join(held_reason(h, n) for h, n in await held_cur.fetchall())
        return JobView(job, stages, self._waiting(job, stages, live, held))

    def _waiting(self, job: JobRow, stages: list[StageRow], live: set[str], held: str = "") -> str:
        """What holds the job: a parked message, its start time or its type's
        running limit, tasks held by flow limits, or queues without a live worker."""
        if JobStatus(job.status).is_terminal:
            return ""
        pending = [
            (s.stage, s.queue or self.outbox.tasks_queue)
            for s in stages
            if s.status == StageStatus.RUNNING and s.remaining > 0
        ]
        reasons = (job.waiting or "", held, unserved_queue_reason(pending, live))
        return "; ".join(r for r in reasons if r)

    async def queues_in_use(self) -> set[str]:
        """The jobs and tasks queues, and the queues of running stages."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q.running_stage_queues)
            rows = await cur.fetchall()
        return {self.outbox.jobs_queue, self.outbox.tasks_queue, *(row[0] for row in rows)}

    async def list_jobs(
        self, status: str | None, job_type: str | None, limit: int, page_token: str
    ) -> tuple[list[JobView], str]:
        limit = max(1, min(limit or 50, MAX_LIST_LIMIT))
        after_created, after_job_id = _parse_job_token(page_token)
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=class_row(JobRow))
            await cur.execute(
                Q.list_jobs,
                {
                    "status": status,
                    "job_type": job_type,
                    "after_created": after_created,
                    "after_job_id": after_job_id,
                    "limit": limit,
                },
            )
            jobs = await cur.fetchall()
            stages: dict[str, list[StageRow]] = defaultdict(list)
            if jobs:
                scur = conn.cursor(row_factory=class_row(StageRow))
                await scur.execute(Q.job_stages_of, {"job_ids": [j.job_id for j in jobs]})
                for stage in await scur.fetchall():
                    stages[stage.job_id].append(stage)
        token = ""
        if len(jobs) == limit:
            last = jobs[-1]
            token = f"{last.created_at.isoformat()}|{last.job_id}"
        return [JobView(j, stages[j.job_id], j.waiting or "") for j in jobs], token

    async def complete_job(self, job_id: str, result: Any) -> tuple[JobView, bool]:
        """Stores the final result; only a processing job whose last stage ended."""
        async with self._transaction() as conn:
            job = await lock_job(conn, job_id)
            cur = conn.cursor(row_factory=class_row(JobRow))
            with job_event("complete job", job):
                await cur.execute(Q.complete_job, {"job_id": job_id, "result": json.dumps(result)})
                done = await cur.fetchone()
            if done is not None:
                await append_events(
                    conn, [NewEvent(job_id, "job_completed", data={"status": done.status})]
                )
                started = await release_job_slots(conn, self.outbox, done)
        if done is not None:
            self.metrics.jobs_finished.labels(done.job_type, done.status).inc()
            if started:
                self._poke_relay()
        return await self.get_job(job_id), done is not None

    async def fail_job(self, job_id: str, error: str) -> tuple[JobView, bool]:
        async with self._transaction() as conn:
            job = await lock_job(conn, job_id)
            with job_event("fail job", job):
                changed = await fail_job_locked(conn, job_id, error, outbox=self.outbox)
        if changed:
            self.metrics.jobs_finished.labels(job.job_type, JobStatus.FAILED.value).inc()
            self._poke_relay()
        return await self.get_job(job_id), changed

    async def cancel_job(self, job_id: str, reason: str) -> tuple[JobView, bool]:
        """Cancels a queued or running job: its unfinished tasks are cancelled,
        claims of them are refused and late outcomes rejected."""
        async with self._transaction() as conn:
            job = await lock_job(conn, job_id)
            changed = await self.cancel_locked(conn, job, reason)
        if changed:
            self._poke_relay()
        return await self.get_job(job_id), changed

    async def cancel_locked(self, conn: psycopg.AsyncConnection, job: JobRow, reason: str) -> bool:
        """cancel_job inside the caller's transaction, the job row locked."""
        job_id = job.job_id
        with job_event("cancel job", job):
            cur = await conn.execute(Q.cancel_job, {"job_id": job_id, "reason": reason})
            changed = await cur.fetchone() is not None
        if changed:
            self.metrics.jobs_finished.labels(job.job_type, JobStatus.CANCELLED.value).inc()
            await conn.execute(Q.cancel_running_stages, {"job_id": job_id})
            cancelled = await cancel_unfinished(conn, job_id)
            await append_events(
                conn,
                [
                    NewEvent(
                        job_id,
                        "job_cancelled",
                        data={"reason": reason, "tasks_cancelled": cancelled},
                    )
                ],
            )
            await after_job_end(conn, self.outbox, job)
        return changed

    async def redrive_job(self, job_id: str) -> tuple[JobView, int]:
        """Re-runs a failed or cancelled job from the stage that stopped.

        Only that stage's failed and cancelled tasks run again (with a fresh
        retry budget); its completed tasks keep their results. A job stopped
        between stages gets its "stage ready" message again.
        """
        requeued = 0
        async with self._transaction() as conn:
            job = await lock_job(conn, job_id)
            if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
                raise Conflict(
                    f"job {job_id} is {job.status}: only failed or cancelled jobs can be resubmitted"
                )
            cur = conn.cursor(row_factory=class_row(StageRow))
            await cur.execute(Q.first_stopped_stage, {"job_id": job_id})
            stopped = await cur.fetchone()
            stage = stopped.stage if stopped else job.stage
            await conn.execute(Q.drop_later_tasks, {"job_id": job_id, "stage": stage})
            await conn.execute(Q.drop_later_stages, {"job_id": job_id, "stage": stage})
            await conn.execute(Q.reopen_job, {"job_id": job_id, "stage": stage})
            messages = []
            reopened: StageRow | None = None
            if stopped is None:
                # Stopped before the stage was planned: plan it again.
                with publishing(job.trace_context, self.outbox.jobs_queue, 1) as trace:
                    messages.append(
                        self.outbox.stage_ready(
                            job_id,
                            job.job_type,
                            stage,
                            definition=job.definition,
                            priority=job.priority,
                            again=True,
                            trace=trace,
                        )
                    )
            else:
                cur2 = await conn.execute(
                    Q.requeue_stopped_tasks, {"job_id": job_id, "stage": stage}
                )
                rows = await cur2.fetchall()
                requeued = len(rows)
                queue = (rows[0][3] if rows else None) or self.outbox.tasks_queue
                # The redriven attempts continue the job's trace, linked to the request.
                with publishing(job.trace_context, queue, requeued) as trace:
                    messages += [
                        self.outbox.task(
                            t, job_id, tt, a, queue=q, priority=job.priority, trace=trace
                        )
                        for t, tt, a, q in rows
                    ]
                await cur.execute(Q.reopen_stage, {"job_id": job_id, "stage": stage})
                reopened = await cur.fetchone()
                assert reopened is not None
            await self.outbox.write(conn, messages)
            await append_events(
                conn,
                [NewEvent(job_id, "job_resubmitted", stage, data={"tasks_requeued": requeued})],
            )
            if reopened is not None and requeued == 0:
                # Nothing to re-run (e.g. cancelled after its last task): advance.
                job = await fetch_job(conn, job_id)
                await evaluate_stage(conn, self.outbox, job, reopened, None)
        self.metrics.jobs_resubmitted.labels(job.job_type).inc()
        self._poke_relay()
        return await self.get_job(job_id), requeued

    async def events_page(
        self,
        job_id: str,
        after_seq: int,
        limit: int,
        job_level_only: bool = False,
        end_only: bool = False,
    ) -> EventsPage:
        """Events after a sequence number; complete=True when the job is
        terminal and nothing follows the last one returned, and then the job
        as it ended comes along. end_only keeps only the events that end the
        job; job_level_only leaves out the per-task ones.
        """
        limit = max(1, min(limit or 500, MAX_LIST_LIMIT))
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q.events_page,
                {
                    "job_id": job_id,
                    "after_seq": after_seq,
                    "limit": limit,
                    "job_level_only": job_level_only,
                    "end_only": end_only,
                    "end_events": list(JOB_END_EVENTS),
                },
            )
            rows = await cur.fetchall()
        if not rows:
            raise NotFound(f"job {job_id} not found")
        events = [EventRow(*row[1:]) for row in rows if row[2] is not None]
        # A short page read in the same snapshot as a terminal job is the end.
        complete = JobStatus(rows[0][0]).is_terminal and len(events) < limit
        # The job as it ended, for a waiter: read once, at the end of a stream.
        ended = await self.get_job(job_id) if complete else None
        return EventsPage(events, complete, ended)

    # -- stages ----------------------------------------------------------------

    async def create_stage_tasks(
        self,
        job_id: str,
        stage: int,
        total_tasks: int,
        tasks: Sequence[NewTaskSpec],
        policy: StagePolicy,
    ) -> tuple[int, bool]:
        """Inserts a chunk of a stage's tasks with their task messages.

        Idempotent: a replayed "stage ready" message re-sends chunks whose
        rows already exist, and they are skipped. Returns (created, completed):
        a stage of zero tasks completes at once.
        """
        _check_task_indexes(total_tasks, tasks)
        async with self._transaction() as conn:
            job = await lock_job(conn, job_id)
            if JobStatus(job.status).is_terminal:
                return 0, False
            if not 1 <= stage <= job.total_stages:
                raise InvalidArgument(f"stage {stage} outside 1..{job.total_stages}", "stage")
            events: list[NewEvent] = []
            if job.held is not None:
                # A delayed job's start came, or a held job's stage 1 is replayed.
                job = await start_or_hold(conn, job, events)
                if job.held == START_TIME:  # early (clocks): again for its time
                    await self.outbox.write(
                        conn,
                        [
                            self.outbox.stage_ready(
                                job_id,
                                job.job_type,
                                1,
                                definition=job.definition,
                                priority=job.priority,
                                scheduled_at=job.not_before,
                                again=True,
                            )
                        ],
                    )
                if job.held is not None:
                    await append_events(conn, events)
                    return 0, False
            created = await self._create_stage_tasks_locked(
                conn, job, stage, total_tasks, tasks, policy, events
            )
            await append_events(conn, events)
        self._poke_relay()
        return created.count, created.stage_completed

    async def _create_stage_tasks_locked(
        self,
        conn: psycopg.AsyncConnection,
        job: JobRow,
        stage: int,
        total_tasks: int,
        tasks: Sequence[NewTaskSpec],
        policy: StagePolicy,
        events: list[NewEvent],
    ) -> CreatedTasks:
        """create_stage_tasks inside the caller's transaction, the job row
        locked; its events go to `events` (the caller appends them)."""
        job_id = job.job_id
        stage_cur = conn.cursor(row_factory=class_row(StageRow))
        await stage_cur.execute(
            Q.insert_stage,
            {
                "job_id": job_id,
                "stage": stage,
                "task_count": total_tasks,
                "max_attempts": policy.retry.max_attempts,
                "backoff_base_ms": policy.retry.backoff_base_ms,
                "backoff_max_ms": policy.retry.backoff_max_ms,
                "max_failed_tasks": policy.max_failed_tasks,
                "queue": policy.queue or None,
                "task_timeout_ms": policy.task_timeout_ms,
                "heartbeat_timeout_ms": policy.heartbeat_timeout_ms,
                "previous_results": policy.previous_results,
                "concurrency_keys": [k for k, _ in policy.concurrency],
                "concurrency_limits": [n for _, n in policy.concurrency],
                "rate_limit": policy.rate_limit.name if policy.rate_limit else None,
            },
        )
        inserted_stage = await stage_cur.fetchone()
        if inserted_stage is not None and policy.rate_limit is not None:
            await upsert_rate_limit(conn, policy.rate_limit)
        view = None
        if inserted_stage is not None:  # the first chunk
            stage_row = inserted_stage
            started: JobRow | None = job
            if (job.status, job.stage) != (JobStatus.PROCESSING, stage):
                job_cur = conn.cursor(row_factory=class_row(JobRow))
                await job_cur.execute(Q.start_job_stage, {"job_id": job_id, "stage": stage})
                started = await job_cur.fetchone()
            if started is not None and stage == 1:
                view = JobView(started, [stage_row])  # what create_job returns
            events.append(
                NewEvent(job_id, "stage_started", stage, data={"task_count": total_tasks})
            )
        else:
            stage_row = await locked_stage(conn, job_id, stage)
        if stage_row.task_count != total_tasks:
            raise InvalidArgument(
                f"stage {stage} has {stage_row.task_count} tasks, not {total_tasks}",
                "total_tasks",
            )
        if stage_row.status != StageStatus.RUNNING:
            return CreatedTasks(0, False, None)
        created = 0
        if tasks:
            cur = await conn.execute(
                Q.insert_tasks,
                {
                    "job_id": job_id,
                    "job_type": job.job_type,
                    "stage": stage,
                    "tasks": records_with_raw(
                        (
                            (
                                {
                                    "task_id": task_id_for(job_id, stage, t.task_index),
                                    "task_type": t.task_type,
                                    "task_index": t.task_index,
                                },
                                t.parameters_json,
                            )
                            for t in tasks
                        ),
                        "parameters",
                    ),
                },
            )
            inserted = await cur.fetchall()
            created = len(inserted)
            queue = stage_row.queue or self.outbox.tasks_queue
            # One producer span per chunk published: its tasks' consumers continue from it.
            with publishing(job.trace_context, queue, created) as trace:
                await self.outbox.write(
                    conn,
                    [
                        self.outbox.task(
                            task_id,
                            job_id,
                            task_type,
                            attempt,
                            queue=stage_row.queue,
                            priority=job.priority,
                            trace=trace,
                        )
                        for task_id, task_type, attempt in inserted
                    ],
                )
        if total_tasks == 0:
            # An empty stage completes at once (and the rows read above change).
            completed = await evaluate_stage(conn, self.outbox, job, stage_row, None, events)
            return CreatedTasks(created, completed, None)
        return CreatedTasks(created, False, view)

    async def advance_stage(self, job_id: str, stage: int) -> bool:
        """Re-counts a stage from its task rows and advances it if all are terminal.

        The repair path (janitor, operator): O(tasks of the stage), never on
        the per-completion path.
        """
        async with self._transaction() as conn:
            job = await lock_job(conn, job_id)
            if JobStatus(job.status).is_terminal:
                return False
            stage_row = await locked_stage(conn, job_id, stage)
            cur = await conn.execute(Q.count_stage_tasks, {"job_id": job_id, "stage": stage})
            counts = {status: n for status, n in await cur.fetchall()}
            terminal = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled"))
            stage_cur = conn.cursor(row_factory=class_row(StageRow))
            await stage_cur.execute(
                Q.recount_stage,
                {
                    "job_id": job_id,
                    "stage": stage,
                    "remaining": stage_row.task_count - terminal,
                    "completed": counts.get("completed", 0),
                    "failed": counts.get("failed", 0),
                    "cancelled": counts.get("cancelled", 0),
                },
            )
            recounted = await stage_cur.fetchone()
            assert recounted is not None
            advanced = await evaluate_stage(conn, self.outbox, job, recounted, None)
        if advanced:
            self.metrics.stage_completed(job.job_id, job.job_type, stage, job.total_stages)
            self._poke_relay()
        return advanced

    async def sweep_holds(self, stale_seconds: float) -> int:
        """The janitor's flow sweep (flow.sweep_holds), in one transaction."""
        async with self._transaction() as conn:
            released = await sweep_holds(conn, self.outbox, stale_seconds)
        if released:
            self._poke_relay()
        return released

    async def stage_results(
        self,
        job_id: str,
        stage: int,
        check_job: bool = True,
        *,
        from_index: int = 0,
        limit: int = 0,
    ) -> AsyncIterator[list[StageResult]]:
        """Yields the stage's task results in chunks, ordered by task index
        (NotFound for an unknown job, unless the caller checked already):
        those from task index from_index on, at most limit of them (0: all).

        Keyset pages over the (job, stage, task_index) key: one round trip for
        a small stage, bounded memory for a 100,000-task one.
        """
        if from_index < 0:
            raise InvalidArgument("from_index must be >= 0", "from_index")
        if limit < 0:
            raise InvalidArgument("limit must be >= 0 (0: every result)", "limit")
        after, left = from_index - 1, limit or None
        first = True
        while True:
            page = RESULTS_CHUNK if left is None else min(left, RESULTS_CHUNK)
            async with self.pool.connection() as conn:
                if first and check_job:
                    await fetch_job(conn, job_id)
                first = False
                cur = await conn.execute(
                    Q.stage_results,
                    {"job_id": job_id, "stage": stage, "after": after, "limit": page},
                )
                rows = await cur.fetchall()
            if rows:
                yield [StageResult(*row) for row in rows]
            if left is not None:
                left -= len(rows)
            if len(rows) < page or left == 0:
                return
            after = rows[-1][0]


def _parse_job_token(token: str) -> tuple[dt.datetime | None, str | None]:
    if not token:
        return None, None
    try:
        created, job_id = token.split("|", 1)
        return dt.datetime.fromisoformat(created), job_id
    except ValueError:
        raise InvalidArgument("malformed page_token", "page_token") from None


def _check_task_indexes(total_tasks: int, tasks: Sequence[NewTaskSpec]) -> None:
    if total_tasks < 0:
        raise InvalidArgument("total_tasks must be >= 0", "total_tasks")
    for spec in tasks:
        if not 0 <= spec.task_index < total_tasks:
            raise InvalidArgument(
                f"task_index {spec.task_index} outside 0..{total_tasks - 1}", "task_index"
            )
