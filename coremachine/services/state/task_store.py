"""Task operations of the state store: claims, outcomes, leases, listings.

Claims and outcomes come in batches (one transaction per batch); the batch's
outcomes are counted into their stages with one UPDATE per stage (the O(1)
barrier) and the stages evaluated under their jobs' locks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.barrier import evaluate_stage
from coremachine.services.state.events import JOB_END_EVENTS, NewEvent, append_events
from coremachine.services.state.job_traces import publishing
from coremachine.services.state.locks import fetch_job, lock_jobs_of
from coremachine.services.state.metrics import StateMetrics
from coremachine.services.state.outbox import Outbox
from coremachine.services.state.rows import StageRow, TaskRow
from coremachine.services.state.sql import Q
from coremachine.services.state.store_models import (
    Claim,
    ClaimedTask,
    ClaimOutcome,
    Outcome,
    OutcomeResult,
)
from coremachine.shared.domain.retry import backoff_seconds
from coremachine.shared.domain.statuses import JobStatus, TaskStatus
from coremachine.shared.domain.tasks import ProgressReport
from coremachine.shared.errors import InvalidArgument
from coremachine.shared.pg_json import records, records_with_raw

MAX_LIST_LIMIT = 1000


class TaskStore:
    """Claims, outcomes, leases and task listings."""

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection in a transaction.

        Not in pipeline mode: psycopg's pipeline polls the socket for
        writability while it waits, and with several syncs per transaction
        that cost more CPU (on every service sharing the machine) than the
        round trips it saved; measured with the latency benchmark.
        """
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    def __init__(
        self,
        pool: AsyncConnectionPool,
        outbox: Outbox,
        on_outbox_written: Callable[[], None] = lambda: None,
        metrics: StateMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.outbox = outbox
        self._poke_relay = on_outbox_written
        self.metrics = metrics or StateMetrics()

    async def claim_tasks(
        self, worker_id: str, lease_seconds: int, claims: Sequence[Claim]
    ) -> list[ClaimOutcome]:
        """Grants a lease on each queued task whose attempt matches the message."""
        if not claims:
            return []
        # One statement (a function): jobs locked first, leases granted, the
        # task_started events appended, all in its own transaction.
        async with self.pool.connection() as conn:
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
        # Metrics only, outside the statement: the first claim of a stage this
        # process advanced observes the advancement's lag.
        self.metrics.claimed((t.job_id, t.stage) for t in granted.values())
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
        async with self._transaction() as conn:
            jobs = await lock_jobs_of(conn, [o.task_id for o in outcomes])
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
                                    {
                                        "task_id": o.task_id,
                                        "token": o.lease_token,
                                        "trace": o.trace_context or None,
                                    },
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
                                "trace": o.trace_context or None,
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
                    queue,
                    attempt_trace,
                ) in await cur.fetchall():
                    if status == TaskStatus.QUEUED:
                        statuses[task_id] = "retrying"
                        delay = backoff_seconds(attempt - 1, base_ms, max_ms)
                        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
                        # The next attempt continues from the failed one (or, for
                        # a reclaimed lease, from the job's trace).
                        with publishing(
                            jobs[job_id].trace_context,
                            queue or self.outbox.tasks_queue,
                            1,
                            parent_trace=attempt_trace,
                        ) as trace:
                            retries.append(
                                self.outbox.task(
                                    task_id,
                                    job_id,
                                    task_type,
                                    attempt,
                                    at,
                                    queue=queue,
                                    trace=trace,
                                )
                            )
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
                    if await evaluate_stage(
                        conn, self.outbox, job, stage_row, first_failure.get(key), events
                    ):
                        completed_stages.append(key)
                        wrote_outbox = True
                    elif JobStatus(job.status) == JobStatus.PROCESSING and (
                        stage_row.failures_exceed_tolerance()
                    ):
                        wrote_outbox = True
            # Every event of the batch (tasks, stages, job) in one statement.
            await append_events(conn, events)
        for job_id, stage in completed_stages:
            job = jobs[job_id]
            self.metrics.stage_completed(job_id, job.job_type, stage, job.total_stages)
        for event in events:
            if event.event_type in JOB_END_EVENTS:
                status = event.data.get("status", "failed")
                self.metrics.jobs_finished.labels(jobs[event.job_id].job_type, status).inc()
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
    ) -> tuple[list[str], list[str], list[str]]:
        """(renewed, lost, cancelled): of the lost leases, the tasks that were
        cancelled (their job cancelled or failed), so the worker can tell
        their handlers to stop."""
        if not leases:
            return [], [], []
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q.renew_leases,
                {
                    "lease_seconds": lease_seconds,
                    "leases": records({"task_id": t, "token": tok} for t, tok in leases),
                },
            )
            renewed = {row[0] for row in await cur.fetchall()}
            lost = sorted(t for t, _ in leases if t not in renewed)
            cancelled: list[str] = []
            if lost:
                cur = await conn.execute(Q.task_states, {"task_ids": lost})
                cancelled = sorted(
                    task_id
                    for task_id, status, _ in await cur.fetchall()
                    if status == TaskStatus.CANCELLED
                )
        return sorted(renewed), lost, cancelled

    async def record_progress(self, reports: Sequence[ProgressReport]) -> int:
        """Stores the latest progress of running tasks, with a task_progress event each."""
        if not reports:
            return 0
        async with self._transaction() as conn:
            await lock_jobs_of(conn, [r.task_id for r in reports])
            cur = await conn.execute(
                Q.record_progress,
                {
                    "reports": records(
                        {
                            "task_id": r.task_id,
                            "token": r.lease_token,
                            "current": r.current,
                            "total": r.total,
                            "message": r.message,
                        }
                        for r in reports
                    )
                },
            )
            recorded = await cur.fetchall()
            await append_events(
                conn,
                [
                    NewEvent(job_id, "task_progress", stage, task_id, _progress_data(progress))
                    for task_id, job_id, stage, progress in recorded
                ],
            )
        return len(recorded)

    async def release_tasks(self, leases: Sequence[tuple[str, str]]) -> list[str]:
        """Hands unfinished tasks back (worker shutdown): queued again, same attempt."""
        if not leases:
            return []
        async with self._transaction() as conn:
            await lock_jobs_of(conn, [t for t, _ in leases])
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
                await fetch_job(conn, job_id)
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


def _progress_data(progress: dict[str, Any]) -> dict[str, Any]:
    return {k: progress.get(k) for k in ("current", "total", "message")}


def _parse_task_token(token: str) -> tuple[str | None, int | None, int | None]:
    if not token:
        return None, None, None
    try:
        job_id, stage, index = token.rsplit(":", 2)
        return job_id, int(stage), int(index)
    except ValueError:
        raise InvalidArgument("malformed page_token", "page_token") from None
