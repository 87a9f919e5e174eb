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
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from services.state.events import NewEvent, append_events
from services.state.outbox import Outbox
from services.state.rows import EventRow, JobRow, StageRow, TaskRow
from services.state.sql import Q
from shared.domain.ids import task_id_for
from shared.domain.retry import RetryPolicy, backoff_seconds
from shared.domain.statuses import JobStatus, TaskStatus
from shared.errors import Conflict, InvalidArgument, NotFound
from shared.pg_json import records, records_with_raw, values

log = logging.getLogger(__name__)

MAX_LIST_LIMIT = 1000
RESULTS_CHUNK = 5000


@dataclass(slots=True)
class JobView:
    job: JobRow
    stages: list[StageRow]


@dataclass(frozen=True, slots=True)
class NewTaskSpec:
    task_index: int
    task_type: str
    parameters_json: str


@dataclass(frozen=True, slots=True)
class StagePolicy:
    retry: RetryPolicy
    max_failed_tasks: int = 0  # -1 tolerates every failure


@dataclass(frozen=True, slots=True)
class Claim:
    task_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """What a worker needs to run a claimed task."""

    task_id: str
    job_id: str
    job_type: str
    task_type: str
    stage: int
    task_index: int
    attempt: int
    parameters_json: str
    lease_token: str


@dataclass(slots=True)
class ClaimOutcome:
    task_id: str
    task: ClaimedTask | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Outcome:
    task_id: str
    lease_token: str
    succeeded: bool
    result_json: str | None = None
    error: str = ""
    retryable: bool = True


@dataclass(slots=True)
class OutcomeResult:
    task_id: str
    accepted: bool
    task_status: str = ""


@dataclass(frozen=True, slots=True)
class StageResult:
    task_index: int
    task_id: str
    status: str
    result_json: str | None
    error: str | None


class StateStore:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        outbox: Outbox,
        on_outbox_written: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool = pool
        self.outbox = outbox
        self._poke_relay = on_outbox_written

    # -- jobs ------------------------------------------------------------------

    async def create_job(
        self,
        job_id: str,
        job_type: str,
        parameters: dict[str, Any],
        total_stages: int,
        metadata: dict[str, Any],
    ) -> tuple[JobView, bool]:
        """Creates the job and its "stage 1 ready" message; idempotent on job_id."""
        if total_stages < 1:
            raise InvalidArgument("total_stages must be at least 1", "total_stages")
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                Q.insert_job,
                {
                    "job_id": job_id,
                    "job_type": job_type,
                    "parameters": json.dumps(parameters),
                    "total_stages": total_stages,
                    "metadata": json.dumps(metadata),
                },
            )
            created = await cur.fetchone() is not None
            if created:
                await self.outbox.write(conn, [self.outbox.stage_ready(job_id, job_type, 1)])
                await append_events(
                    conn, [NewEvent(job_id, "job_created", data={"job_type": job_type})]
                )
        if created:
            self._poke_relay()
        return await self.get_job(job_id), created

    async def get_job(self, job_id: str) -> JobView:
        async with self.pool.connection() as conn:
            job = await self._job(conn, job_id)
            return JobView(job, await self._stages(conn, job_id))

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
        return [JobView(j, stages[j.job_id]) for j in jobs], token

    async def complete_job(self, job_id: str, result: Any) -> tuple[JobView, bool]:
        """Stores the final result; only a processing job whose last stage ended."""
        async with self.pool.connection() as conn, conn.transaction():
            await self._lock_job(conn, job_id)
            cur = conn.cursor(row_factory=class_row(JobRow))
            await cur.execute(Q.complete_job, {"job_id": job_id, "result": json.dumps(result)})
            done = await cur.fetchone()
            if done is not None:
                await append_events(
                    conn, [NewEvent(job_id, "job_completed", data={"status": done.status})]
                )
        return await self.get_job(job_id), done is not None

    async def fail_job(self, job_id: str, error: str) -> tuple[JobView, bool]:
        async with self.pool.connection() as conn, conn.transaction():
            await self._lock_job(conn, job_id)
            changed = await self._fail_job_locked(conn, job_id, error)
        return await self.get_job(job_id), changed

    async def cancel_job(self, job_id: str, reason: str) -> tuple[JobView, bool]:
        """Cancels a queued or running job: its unfinished tasks are cancelled,
        claims of them are refused and late outcomes rejected."""
        async with self.pool.connection() as conn, conn.transaction():
            await self._lock_job(conn, job_id)
            cur = await conn.execute(Q.cancel_job, {"job_id": job_id, "reason": reason})
            changed = await cur.fetchone() is not None
            if changed:
                await conn.execute(Q.cancel_running_stages, {"job_id": job_id})
                cancelled = await self._cancel_unfinished(conn, job_id)
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
        return await self.get_job(job_id), changed

    async def redrive_job(self, job_id: str) -> tuple[JobView, int]:
        """Re-runs a failed or cancelled job from the stage that stopped.

        Only that stage's failed and cancelled tasks run again (with a fresh
        retry budget); its completed tasks keep their results. A job stopped
        between stages gets its "stage ready" message again.
        """
        requeued = 0
        async with self.pool.connection() as conn, conn.transaction():
            job = await self._lock_job(conn, job_id)
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
                messages.append(self.outbox.stage_ready(job_id, job.job_type, stage))
            else:
                cur2 = await conn.execute(
                    Q.requeue_stopped_tasks, {"job_id": job_id, "stage": stage}
                )
                rows = await cur2.fetchall()
                requeued = len(rows)
                messages += [self.outbox.task(t, job_id, tt, a) for t, tt, a in rows]
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
                job = await self._job(conn, job_id)
                await self._evaluate_stage(conn, job, reopened, None)
        self._poke_relay()
        return await self.get_job(job_id), requeued

    async def list_events(
        self, job_id: str, after_seq: int, limit: int, job_level_only: bool = False
    ) -> tuple[list[EventRow], bool]:
        """Events after a sequence number; complete=True when the job is
        terminal and nothing follows the last one returned."""
        limit = max(1, min(limit or 500, MAX_LIST_LIMIT))
        # One snapshot for the job row and its events, so "complete" is exact.
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            job = await self._job(conn, job_id)
            cur = conn.cursor(row_factory=class_row(EventRow))
            await cur.execute(
                Q.list_events,
                {
                    "job_id": job_id,
                    "after_seq": after_seq,
                    "limit": limit,
                    "job_level_only": job_level_only,
                },
            )
            events = await cur.fetchall()
        # A short page read in the same snapshot as a terminal job is the end.
        complete = JobStatus(job.status).is_terminal and len(events) < limit
        return events, complete

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
        if total_tasks < 0:
            raise InvalidArgument("total_tasks must be >= 0", "total_tasks")
        for spec in tasks:
            if not 0 <= spec.task_index < total_tasks:
                raise InvalidArgument(
                    f"task_index {spec.task_index} outside 0..{total_tasks - 1}", "task_index"
                )
        stage_completed = False
        async with self.pool.connection() as conn, conn.transaction():
            job = await self._lock_job(conn, job_id)
            if JobStatus(job.status).is_terminal:
                return 0, False
            if not 1 <= stage <= job.total_stages:
                raise InvalidArgument(f"stage {stage} outside 1..{job.total_stages}", "stage")
            cur = await conn.execute(
                Q.insert_stage,
                {
                    "job_id": job_id,
                    "stage": stage,
                    "task_count": total_tasks,
                    "max_attempts": policy.retry.max_attempts,
                    "backoff_base_ms": policy.retry.backoff_base_ms,
                    "backoff_max_ms": policy.retry.backoff_max_ms,
                    "max_failed_tasks": policy.max_failed_tasks,
                },
            )
            first_chunk = await cur.fetchone() is not None
            if first_chunk:
                await conn.execute(Q.start_job_stage, {"job_id": job_id, "stage": stage})
                await append_events(
                    conn,
                    [NewEvent(job_id, "stage_started", stage, data={"task_count": total_tasks})],
                )
            stage_row = await self._locked_stage(conn, job_id, stage)
            if stage_row.task_count != total_tasks:
                raise InvalidArgument(
                    f"stage {stage} has {stage_row.task_count} tasks, not {total_tasks}",
                    "total_tasks",
                )
            if stage_row.status != "running":
                return 0, False
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
                await self.outbox.write(
                    conn,
                    [
                        self.outbox.task(task_id, job_id, task_type, attempt)
                        for task_id, task_type, attempt in inserted
                    ],
                )
            if total_tasks == 0:
                stage_completed = await self._evaluate_stage(conn, job, stage_row, None)
        self._poke_relay()
        return created, stage_completed

    async def advance_stage(self, job_id: str, stage: int) -> bool:
        """Re-counts a stage from its task rows and advances it if all are terminal.

        The repair path (janitor, operator): O(tasks of the stage), never on
        the per-completion path.
        """
        async with self.pool.connection() as conn, conn.transaction():
            job = await self._lock_job(conn, job_id)
            if JobStatus(job.status).is_terminal:
                return False
            stage_row = await self._locked_stage(conn, job_id, stage)
            cur = await conn.execute(
                "SELECT status::text, count(*) FROM coremachine.tasks"
                " WHERE job_id = %s AND stage = %s GROUP BY status",
                (job_id, stage),
            )
            counts = {status: n for status, n in await cur.fetchall()}
            terminal = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled"))
            cur = await conn.execute(
                "UPDATE coremachine.job_stages SET remaining = %s, completed = %s, failed = %s,"
                " cancelled = %s WHERE job_id = %s AND stage = %s RETURNING *",
                (
                    stage_row.task_count - terminal,
                    counts.get("completed", 0),
                    counts.get("failed", 0),
                    counts.get("cancelled", 0),
                    job_id,
                    stage,
                ),
            )
            row = await cur.fetchone()
            assert row is not None
            advanced = await self._evaluate_stage(conn, job, _stage_from(cur, row), None)
        if advanced:
            self._poke_relay()
        return advanced

    async def stage_results(self, job_id: str, stage: int) -> AsyncIterator[list[StageResult]]:
        """Yields the stage's task results in chunks, ordered by task index.

        Keyset pages over the (job, stage, task_index) key: one round trip for
        a small stage, bounded memory for a 100,000-task one.
        """
        after = -1
        while True:
            async with self.pool.connection() as conn:
                if after < 0:
                    await self._job(conn, job_id)
                cur = await conn.execute(
                    Q.stage_results,
                    {"job_id": job_id, "stage": stage, "after": after, "limit": RESULTS_CHUNK},
                )
                rows = await cur.fetchall()
            if rows:
                yield [StageResult(*row) for row in rows]
            if len(rows) < RESULTS_CHUNK:
                return
            after = rows[-1][0]

    # -- tasks -----------------------------------------------------------------

    async def claim_tasks(
        self, worker_id: str, lease_seconds: int, claims: Sequence[Claim]
    ) -> list[ClaimOutcome]:
        """Grants a lease on each queued task whose attempt matches the message."""
        if not claims:
            return []
        ids = [c.task_id for c in claims]
        async with self.pool.connection() as conn, conn.transaction():
            await self._lock_jobs_of(conn, ids)
            cur = conn.cursor(row_factory=class_row(ClaimedTask))
            await cur.execute(
                Q.claim_tasks,
                {
                    "worker_id": worker_id,
                    "lease_seconds": lease_seconds,
                    "claims": records(
                        [{"task_id": c.task_id, "attempt": c.attempt} for c in claims]
                    ),
                },
            )
            granted = {t.task_id: t for t in await cur.fetchall()}
            await append_events(
                conn,
                [
                    NewEvent(t.job_id, "task_started", t.stage, t.task_id, {"attempt": t.attempt})
                    for t in granted.values()
                ],
            )
        refused = [c for c in claims if c.task_id not in granted]
        reasons = await self._refusal_reasons(refused) if refused else {}
        return [
            ClaimOutcome(c.task_id, granted.get(c.task_id), reasons.get(c.task_id, ""))
            for c in claims
        ]

    async def _refusal_reasons(self, refused: Sequence[Claim]) -> dict[str, str]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q.task_states, {"task_ids": [c.task_id for c in refused]})
            states = {
                task_id: (status, attempt) for task_id, status, attempt in await cur.fetchall()
            }
        reasons = {}
        for claim in refused:
            state = states.get(claim.task_id)
            if state is None:
                reasons[claim.task_id] = "unknown_task"
            elif state[1] != claim.attempt:
                reasons[claim.task_id] = "stale_attempt"
            else:
                reasons[claim.task_id] = f"task_{state[0]}"
        return reasons

    async def complete_tasks(
        self, outcomes: Sequence[Outcome]
    ) -> tuple[list[OutcomeResult], list[tuple[str, int]]]:
        """Records outcomes; counts them into their stages; advances stages.

        Returns per-outcome acceptance and the (job, stage) pairs completed.
        """
        if not outcomes:
            return [], []
        # A task reported twice in one batch (duplicate delivery) counts once:
        # only its first outcome is applied; the others are reported stale.
        firsts: dict[str, Outcome] = {}
        first_position: dict[str, int] = {}
        for position, o in enumerate(outcomes):
            firsts.setdefault(o.task_id, o)
            first_position.setdefault(o.task_id, position)
        ok = [o for o in firsts.values() if o.succeeded]
        bad = [o for o in firsts.values() if not o.succeeded]
        statuses: dict[str, str] = {}
        completed_stages: list[tuple[str, int]] = []
        wrote_outbox = False
        async with self.pool.connection() as conn, conn.transaction():
            jobs = await self._lock_jobs_of(conn, [o.task_id for o in outcomes])
            per_stage: dict[tuple[str, int], Counter[str]] = defaultdict(Counter)
            events: list[NewEvent] = []
            first_failure: dict[tuple[str, int], str] = {}
            if ok:
                cur = await conn.execute(
                    Q.settle_succeeded,
                    {
                        "outcomes": records_with_raw(
                            (
                                (
                                    {"task_id": o.task_id, "token": o.lease_token},
                                    o.result_json or "null",
                                )
                                for o in ok
                            ),
                            "result",
                        ),
                    },
                )
                for task_id, job_id, stage, _index, attempt in await cur.fetchall():
                    statuses[task_id] = TaskStatus.COMPLETED
                    per_stage[(job_id, stage)]["completed"] += 1
                    events.append(
                        NewEvent(job_id, "task_completed", stage, task_id, {"attempt": attempt})
                    )
            if bad:
                retries = []
                cur = await conn.execute(
                    Q.settle_failed,
                    {
                        "outcomes": records(
                            {
                                "task_id": o.task_id,
                                "token": o.lease_token,
                                "error": o.error[:8000],
                                "retryable": o.retryable,
                            }
                            for o in bad
                        ),
                    },
                )
                for (
                    task_id,
                    job_id,
                    task_type,
                    stage,
                    _index,
                    status,
                    attempt,
                    error,
                    base_ms,
                    max_ms,
                ) in await cur.fetchall():
                    if status == TaskStatus.QUEUED:
                        statuses[task_id] = "retrying"
                        delay = backoff_seconds(attempt - 1, base_ms, max_ms)
                        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
                        retries.append(self.outbox.task(task_id, job_id, task_type, attempt, at))
                        events.append(
                            NewEvent(
                                job_id,
                                "task_retrying",
                                stage,
                                task_id,
                                {"attempt": attempt, "delay_s": round(delay, 3), "error": error},
                            )
                        )
                    else:
                        statuses[task_id] = TaskStatus.FAILED
                        per_stage[(job_id, stage)]["failed"] += 1
                        first_failure.setdefault(
                            (job_id, stage),
                            f"task {task_id} failed after {attempt} attempt(s): {error}",
                        )
                        events.append(
                            NewEvent(
                                job_id,
                                "task_failed",
                                stage,
                                task_id,
                                {"attempt": attempt, "error": error},
                            )
                        )
                await self.outbox.write(conn, retries)
                wrote_outbox = bool(retries)
            if per_stage:
                # No separate stage locks: every writer of a stage row holds its
                # job's row lock first (taken above, in key order).
                keys = sorted(per_stage)
                stage_cur = conn.cursor(row_factory=class_row(StageRow))
                await stage_cur.execute(
                    Q.count_into_stages,
                    {
                        "job_ids": [k[0] for k in keys],
                        "stages": [k[1] for k in keys],
                        "done": [sum(per_stage[k].values()) for k in keys],
                        "completed": [per_stage[k]["completed"] for k in keys],
                        "failed": [per_stage[k]["failed"] for k in keys],
                    },
                )
                for stage_row in await stage_cur.fetchall():
                    key = (stage_row.job_id, stage_row.stage)
                    job = jobs[stage_row.job_id]
                    if await self._evaluate_stage(
                        conn, job, stage_row, first_failure.get(key), events
                    ):
                        completed_stages.append(key)
                        wrote_outbox = True
                    elif JobStatus(job.status) == JobStatus.PROCESSING and (
                        stage_row.failures_exceed_tolerance()
                    ):
                        wrote_outbox = True
            # Every event of the batch (tasks, stages, job) in one statement.
            await append_events(conn, events)
        if wrote_outbox:
            self._poke_relay()
        results = [
            OutcomeResult(o.task_id, accepted, statuses.get(o.task_id, "") if accepted else "")
            for position, o in enumerate(outcomes)
            for accepted in [o.task_id in statuses and first_position[o.task_id] == position]
        ]
        return results, completed_stages

    async def renew_leases(
        self, lease_seconds: int, leases: Sequence[tuple[str, str]]
    ) -> tuple[list[str], list[str]]:
        if not leases:
            return [], []
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q.renew_leases,
                {
                    "lease_seconds": lease_seconds,
                    "leases": records({"task_id": t, "token": tok} for t, tok in leases),
                },
            )
            renewed = {row[0] for row in await cur.fetchall()}
        return sorted(renewed), sorted(t for t, _ in leases if t not in renewed)

    async def release_tasks(self, leases: Sequence[tuple[str, str]]) -> list[str]:
        """Hands unfinished tasks back (worker shutdown): queued again, same attempt."""
        if not leases:
            return []
        async with self.pool.connection() as conn, conn.transaction():
            await self._lock_jobs_of(conn, [t for t, _ in leases])
            cur = await conn.execute(
                Q.release_tasks,
                {"leases": records({"task_id": t, "token": tok} for t, tok in leases)},
            )
            return [row[0] for row in await cur.fetchall()]

    async def list_tasks(
        self,
        job_id: str | None,
        stage: int | None,
        status: str | None,
        limit: int,
        page_token: str,
    ) -> tuple[list[TaskRow], str]:
        limit = max(1, min(limit or 100, MAX_LIST_LIMIT))
        after = _parse_task_token(page_token)
        async with self.pool.connection() as conn:
            if job_id:
                await self._job(conn, job_id)
            cur = conn.cursor(row_factory=class_row(TaskRow))
            await cur.execute(
                Q.list_tasks,
                {
                    "job_id": job_id,
                    "stage": stage,
                    "status": status,
                    "limit": limit,
                    "after_task_id": page_token or None,
                    "after_job_id": after[0],
                    "after_stage": after[1],
                    "after_index": after[2],
                },
            )
            tasks = await cur.fetchall()
        token = ""
        if len(tasks) == limit:
            last = tasks[-1]
            token = f"{last.job_id}:{last.stage}:{last.task_index}"
        return tasks, token

    # -- internals -------------------------------------------------------------

    async def _job(self, conn: psycopg.AsyncConnection, job_id: str) -> JobRow:
        cur = conn.cursor(row_factory=class_row(JobRow))
        await cur.execute(Q.get_job, {"job_id": job_id})
        job = await cur.fetchone()
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    async def _lock_job(self, conn: psycopg.AsyncConnection, job_id: str) -> JobRow:
        cur = conn.cursor(row_factory=class_row(JobRow))
        await cur.execute(Q.lock_job, {"job_id": job_id})
        job = await cur.fetchone()
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    async def _lock_jobs_of(
        self, conn: psycopg.AsyncConnection, task_ids: list[str]
    ) -> dict[str, JobRow]:
        """Locks the jobs of these tasks (first, in key order); returns them by id."""
        cur = conn.cursor(row_factory=class_row(JobRow))
        await cur.execute(Q.lock_jobs_of_tasks, {"task_ids": values(task_ids)})
        return {job.job_id: job for job in await cur.fetchall()}

    async def _stages(self, conn: psycopg.AsyncConnection, job_id: str) -> list[StageRow]:
        cur = conn.cursor(row_factory=class_row(StageRow))
        await cur.execute(Q.job_stages, {"job_id": job_id})
        return await cur.fetchall()

    async def _locked_stage(
        self, conn: psycopg.AsyncConnection, job_id: str, stage: int
    ) -> StageRow:
        cur = conn.cursor(row_factory=class_row(StageRow))
        await cur.execute(Q.lock_stages, {"job_ids": [job_id], "stages": [stage]})
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"stage {stage} of job {job_id} has no tasks yet")
        return row

    async def _evaluate_stage(
        self,
        conn: psycopg.AsyncConnection,
        job: JobRow,
        stage_row: StageRow,
        failure: str | None,
        events: list[NewEvent] | None = None,
    ) -> bool:
        """Applies the barrier to a locked, freshly counted stage row.

        Fails the job when the stage's failures exceed its tolerance; advances
        the stage when nothing remains. Returns True if the stage completed.
        The status CAS in finish_stage makes both happen at most once. Events
        go to `events` when given (the caller appends them), else are written.
        """
        if stage_row.status != "running" or JobStatus(job.status).is_terminal:
            return False
        if stage_row.failures_exceed_tolerance():
            if failure is None:
                failure = await self._describe_failure(conn, job.job_id, stage_row.stage)
            await self._fail_job_locked(conn, job.job_id, failure, events)
            return False
        if stage_row.remaining > 0:
            return False
        status = "completed_with_errors" if stage_row.failed else "completed"
        summary = {
            "task_count": stage_row.task_count,
            "completed": stage_row.completed,
            "failed": stage_row.failed,
            "cancelled": stage_row.cancelled,
            "status": status,
        }
        last_stage = stage_row.stage >= job.total_stages
        cur = await conn.execute(
            Q.finish_stage,
            {
                "job_id": job.job_id,
                "stage": stage_row.stage,
                "status": status,
                "summary": json.dumps(summary),
                "next_stage": None if last_stage else stage_row.stage + 1,
            },
        )
        if await cur.fetchone() is None:
            return False
        message = (
            self.outbox.finalize(job.job_id, job.job_type)
            if last_stage
            else self.outbox.stage_ready(job.job_id, job.job_type, stage_row.stage + 1)
        )
        await self.outbox.write(conn, [message])
        await _record(
            conn, events, [NewEvent(job.job_id, "stage_completed", stage_row.stage, data=summary)]
        )
        return True

    async def _describe_failure(
        self, conn: psycopg.AsyncConnection, job_id: str, stage: int
    ) -> str:
        cur = await conn.execute(
            "SELECT task_id, attempt, error_details FROM coremachine.tasks"
            " WHERE job_id = %s AND stage = %s AND status = 'failed' ORDER BY task_index LIMIT 1",
            (job_id, stage),
        )
        row = await cur.fetchone()
        if row is None:
            return f"stage {stage} failed"
        return f"task {row[0]} failed after {row[1]} attempt(s): {row[2]}"

    async def _fail_job_locked(
        self,
        conn: psycopg.AsyncConnection,
        job_id: str,
        error: str,
        events: list[NewEvent] | None = None,
    ) -> bool:
        cur = await conn.execute(Q.fail_job, {"job_id": job_id, "error": error})
        if await cur.fetchone() is None:
            return False
        await conn.execute(Q.fail_running_stages, {"job_id": job_id})
        cancelled = await self._cancel_unfinished(conn, job_id)
        await _record(
            conn,
            events,
            [NewEvent(job_id, "job_failed", data={"error": error, "tasks_cancelled": cancelled})],
        )
        return True

    async def _cancel_unfinished(self, conn: psycopg.AsyncConnection, job_id: str) -> int:
        cur = await conn.execute(Q.cancel_unfinished_tasks, {"job_id": job_id})
        cancelled = Counter(row[0] for row in await cur.fetchall())
        if cancelled:
            await conn.execute(
                Q.count_cancelled,
                {"job_id": job_id, "stages": list(cancelled), "counts": list(cancelled.values())},
            )
        return cancelled.total()


async def _record(
    conn: psycopg.AsyncConnection, collected: list[NewEvent] | None, new: list[NewEvent]
) -> None:
    """Adds events to the caller's batch, or writes them now when there is none."""
    if collected is None:
        await append_events(conn, new)
    else:
        collected.extend(new)


def _stage_from(cur: psycopg.AsyncCursor[Any], row: Any) -> StageRow:
    names = [c.name for c in cur.description or []]
    return StageRow(**dict(zip(names, row, strict=True)))


def _parse_job_token(token: str) -> tuple[dt.datetime | None, str | None]:
    if not token:
        return None, None
    try:
        created, job_id = token.split("|", 1)
        return dt.datetime.fromisoformat(created), job_id
    except ValueError:
        raise InvalidArgument("malformed page_token", "page_token") from None


def _parse_task_token(token: str) -> tuple[str | None, int | None, int | None]:
    if not token:
        return None, None, None
    try:
        job_id, stage, index = token.rsplit(":", 2)
        return job_id, int(stage), int(index)
    except ValueError:
        raise InvalidArgument("malformed page_token", "page_token") from None
