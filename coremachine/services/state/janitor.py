"""The janitor: a single-leader sweep that keeps jobs from getting stuck.

Each sweep (recorded in janitor_runs):
1. reclaims expired task leases (worker died): the task is failed as a
   retryable error, so it gets its next attempt, or fails when none is left;
2. re-evaluates running stages whose tasks are all terminal but which did not
   advance (advance_stage is a CAS, so racing the normal path is harmless);
3. relays outbox rows left behind;
4. fails jobs past the configured deadline, naming the reason;
5. re-sends the message of a queued task that has none: in a stage where
   nothing moved for TASK_RESEND_SECONDS, a queued task whose message the
   broker no longer holds (nor the outbox) gets it again. A broker that
   cannot tell (Service Bus) gets it again at most every
   max(TASK_RESEND_SECONDS, 11 minutes), past its duplicate-detection window,
   and a duplicate is refused by the claim.
Only the holder of the `janitor` lease row sweeps, so replicas never both do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.outbox import OutboxRelay
from coremachine.services.state.sql import Q
from coremachine.services.state.store import StateStore
from coremachine.services.state.store_models import Outcome
from coremachine.shared import tracing

log = logging.getLogger(__name__)

BATCH = 500
# Past Service Bus's duplicate-detection window (10 minutes by default).
GUESS_RESEND_SECONDS = 660.0


@dataclass
class SweepReport:
    leases_reclaimed: int = 0
    stages_advanced: int = 0
    outbox_relayed: int = 0
    jobs_timed_out: int = 0
    messages_resent: int = 0
    details: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "leases_reclaimed": self.leases_reclaimed,
            "stages_advanced": self.stages_advanced,
            "outbox_relayed": self.outbox_relayed,
            "jobs_timed_out": self.jobs_timed_out,
            "messages_resent": self.messages_resent,
            "details": self.details[:50],
        }


class Janitor:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        store: StateStore,
        relay: OutboxRelay,
        *,
        interval: float,
        stall_seconds: float,
        job_deadline_seconds: float,
        resend_seconds: float = 60.0,
        holder: str | None = None,
    ) -> None:
        self.pool = pool
        self.store = store
        self.relay = relay
        self.interval = interval
        self.stall_seconds = stall_seconds
        self.job_deadline_seconds = job_deadline_seconds
        self.resend_seconds = resend_seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"

    async def is_leader(self) -> bool:
        """Takes or renews the janitor lease; True if this process holds it."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q.acquire_lease,
                {"name": "janitor", "holder": self.holder, "ttl_seconds": self.interval * 3},
            )
            return await cur.fetchone() is not None

    async def sweep(self) -> SweepReport:
        report = SweepReport()
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q.start_janitor_run, {"holder": self.holder})
            row = await cur.fetchone()
            assert row is not None
            run_id = row[0]
        error = None
        metrics = self.store.metrics
        try:
            # Its own trace: what it does for a job continues that job's trace,
            # linked to this sweep (shared/tracing.job_span).
            with tracing.span("janitor sweep", attributes={"coremachine.janitor.run": run_id}):
                await self._reclaim_leases(report)
                await self._advance_stalled(report)
                report.outbox_relayed = await self.relay.relay_once()
                await self._time_out_jobs(report)
                await self._resend_lost_messages(report)
        except Exception as exc:
            error = repr(exc)
            metrics.janitor_sweeps.labels("error").inc()
            raise
        else:
            metrics.janitor_sweeps.labels("ok").inc()
            metrics.leases_reclaimed.inc(report.leases_reclaimed)
        finally:
            metrics.janitor_last_sweep.set(time.time())
            async with self.pool.connection() as conn:
                await conn.execute(
                    Q.finish_janitor_run,
                    {"run_id": run_id, "actions": json.dumps(report.as_dict()), "error": error},
                )
        return report

    async def _reclaim_leases(self, report: SweepReport) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q.expired_leases, {"limit": BATCH})
            expired = await cur.fetchall()
        if not expired:
            return
        outcomes = [
            Outcome(
                task_id,
                str(token),
                False,
                None,
                "lease expired: the worker stopped heart-beating",
                True,
            )
            for task_id, token in expired
        ]
        results, _ = await self.store.complete_tasks(outcomes)
        report.leases_reclaimed = sum(r.accepted for r in results)
        report.details += [
            f"reclaimed {r.task_id} -> {r.task_status}" for r in results if r.accepted
        ]

    async def _advance_stalled(self, report: SweepReport) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q.stalled_stages, {"stall_seconds": self.stall_seconds, "limit": BATCH}
            )
            stalled = await cur.fetchall()
        for job_id, stage in stalled:
            if await self.store.advance_stage(job_id, stage):
                report.stages_advanced += 1
                report.details.append(f"advanced {job_id} stage {stage}")

    async def _time_out_jobs(self, report: SweepReport) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q.overdue_jobs, {"deadline_seconds": self.job_deadline_seconds, "limit": BATCH}
            )
            overdue = [row[0] for row in await cur.fetchall()]
        for job_id in overdue:
            reason = f"job exceeded its deadline of {self.job_deadline_seconds:.0f}s"
            _, changed = await self.store.fail_job(job_id, reason)
            if changed:
                report.jobs_timed_out += 1
                report.details.append(f"timed out {job_id}")

    async def _resend_lost_messages(self, report: SweepReport) -> None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q.quiet_stages_with_queued_tasks,
                {"quiet_seconds": self.resend_seconds, "limit": BATCH},
            )
            stages = await cur.fetchall()
        outbox = self.store.outbox
        for job_id, stage, queue in stages:
            queue = queue or outbox.tasks_queue
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    Q.waiting_tasks_of_stage,
                    {
                        "job_id": job_id,
                        "stage": stage,
                        "quiet_seconds": self.resend_seconds,
                        "resend_every": self.resend_seconds,
                        "limit": BATCH,
                    },
                )
                waiting = await cur.fetchall()
            if not waiting:
                continue
            messages = {
                f"{task_id}:{attempt}": (task_id, task_type, attempt)
                for task_id, task_type, attempt, _ in waiting
            }
            missing = await self.relay.broker.missing_messages(queue, list(messages))
            if missing is None:
                # The broker cannot tell: re-send what waited past its
                # duplicate-detection window (within it, it would drop the copy).
                missing = {
                    f"{task_id}:{attempt}"
                    for task_id, _, attempt, waited in waiting
                    if waited.total_seconds() >= GUESS_RESEND_SECONDS
                }
            if not missing:
                continue
            async with self.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(Q.outbox_message_ids, {"message_ids": sorted(missing)})
                missing -= {row[0] for row in await cur.fetchall()}
                if not missing:
                    continue
                cur = await conn.execute(
                    Q.mark_resent, {"task_ids": [messages[m][0] for m in sorted(missing)]}
                )
                still_queued = {row[0] for row in await cur.fetchall()}
                await outbox.write(
                    conn,
                    [
                        outbox.task(task_id, job_id, task_type, attempt, queue=queue)
                        for m in sorted(missing)
                        for task_id, task_type, attempt in [messages[m]]
                        if task_id in still_queued
                    ],
                )
            report.messages_resent += len(still_queued)
            report.details += [f"re-sent the lost message of {t}" for t in sorted(still_queued)]
        if report.messages_resent:
            self.relay.notify()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                if await self.is_leader():
                    report = await self.sweep()
                    if any(
                        (
                            report.leases_reclaimed,
                            report.stages_advanced,
                            report.jobs_timed_out,
                            report.messages_resent,
                        )
                    ):
                        log.info("janitor sweep", extra={"fields": report.as_dict()})
            except Exception:
                log.exception("janitor sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)
