"""Fires schedules: claims due ticks from the state service and submits their jobs.

Why here: a tick's job must go through the submit path (the job type's
parameter model, stage 1 planned, the definition's fingerprint), which only
an orchestrator can run; and exactly-once must not depend on how many
orchestrators do it. So the state service decides, in one transaction per
schedule (its row locked, next_fire_at moved on, the firing inserted under
its primary key), which ticks fire and hands each to one claimer; the
claimer submits the job under the id derived from the schedule and the tick,
and records the outcome. Two orchestrators never get the same tick; one
that dies before recording leaves the firing pending, and after its lease it
is handed out again: the same job id makes a second submit the same job.

Every orchestrator runs this loop for the job types it serves. It sleeps
until the next tick is due (as the state service says), at most
SCHEDULER_POLL_SECONDS, so a new schedule is seen soon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from coremachine.services.orchestrator.submission import Submitter
from coremachine.shared.domain.jobs import Job
from coremachine.shared.domain.schedules import Firing
from coremachine.shared.errors import Conflict, InvalidArgument, NotFound
from coremachine.shared.state_client import StateClient

log = logging.getLogger(__name__)

BATCH = 50
MIN_WAIT = 0.01


class Scheduler:
    def __init__(
        self,
        state: StateClient,
        submitter: Submitter,
        orchestrator_id: str,
        *,
        poll_seconds: float = 1.0,
        lease_seconds: int = 30,
    ) -> None:
        self.state = state
        self.submitter = submitter
        self.orchestrator_id = orchestrator_id
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.job_types = submitter.registry.names()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            wait = self.poll_seconds
            try:
                fired, next_in = await self.fire_due()
                if fired >= BATCH:
                    continue  # more may be due
                if next_in is not None:
                    wait = min(wait, max(next_in, MIN_WAIT))
            except Exception as exc:
                log.warning("claiming due schedule ticks failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), wait)

    async def fire_due(self) -> tuple[int, float | None]:
        """Claims and submits what is due; returns how many, and when the next is."""
        firings, next_in = await self.state.claim_due_firings(
            self.orchestrator_id, self.job_types, BATCH, self.lease_seconds
        )
        await asyncio.gather(*(self.submit(f) for f in firings))
        return len(firings), next_in

    async def trigger(self, name: str) -> tuple[Firing, Job | None]:
        """A firing now (trigger-now), submitted and recorded like a tick's."""
        firing = await self.state.trigger_schedule(name, self.orchestrator_id, self.lease_seconds)
        return firing, await self.submit(firing)

    async def submit(self, firing: Firing) -> Job | None:
        """Submits a firing's job and records the outcome; a transient failure
        leaves it pending (handed out again after its lease)."""
        try:
            job, created = await self.submitter.submit(
                firing.job_type,
                json.dumps(firing.parameters).encode(),
                priority=firing.priority,
                job_id=firing.job_id,
            )
        except (InvalidArgument, NotFound, Conflict) as exc:
            # The job type is gone or its parameters no longer fit: this tick
            # cannot run, whoever tries; say so on the schedule's record.
            log.error("schedule %s tick %s not submitted: %s", firing.schedule, firing.tick_at, exc)
            await self.state.record_firing(firing, "failed", detail=str(exc))
            return None
        except Exception as exc:
            log.warning("schedule %s tick %s: submit failed, retried: %s", firing.schedule,
                        firing.tick_at, exc)  # fmt: skip
            return None
        await self.state.record_firing(
            firing, "submitted", job.job_id, "" if created else "the job existed already"
        )
        log.info(
            "schedule fired",
            extra={
                "fields": {
                    "schedule": firing.schedule,
                    "tick_at": firing.tick_at.isoformat(),
                    "kind": firing.kind,
                    "job_id": job.job_id,
                }
            },
        )
        return job
