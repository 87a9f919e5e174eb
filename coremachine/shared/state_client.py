"""The state-client port: what the orchestrator and the worker ask the state service.

Domain objects in, domain objects out (shared/domain); failures are
shared.errors (NotFound, InvalidArgument, Conflict, Unavailable, Internal).
Adapters: `state_clients/grpc.py` (the real service), `state_clients/memory.py`
(in-memory, for unit tests); both pass tests/contract/test_state_client_contract.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from coremachine.shared.domain.jobs import Job, JobTypeDefinition, NewJob, StagePlan
from coremachine.shared.domain.schedules import Firing, Schedule
from coremachine.shared.domain.tasks import (
    ClaimResult,
    FailedTask,
    LeaseRenewal,
    OutcomeAck,
    ProgressReport,
    StageResult,
    TaskClaim,
    TaskLease,
    TaskOutcome,
    WorkerInfo,
)


@runtime_checkable
class StateClient(Protocol):
    # -- jobs (orchestrator) ---------------------------------------------------

    async def create_job(self, job: NewJob) -> tuple[Job, bool]:
        """Creates the job (idempotent on job_id); returns it and whether it was new."""

    async def get_job(self, job_id: str) -> Job:
        """The job with its stages (NotFound if unknown)."""

    async def job_and_stage_results(self, job_id: str, stage: int) -> tuple[Job, list[StageResult]]:
        """The job and one stage's task results by task index, read in one call."""

    async def create_stage_tasks(self, job_id: str, stage: int, plan: StagePlan) -> int:
        """Creates (a chunk of) a stage's tasks; idempotent; returns how many were new."""

    async def complete_job(self, job_id: str, result_json: bytes) -> bool:
        """Records the job's result; False if the job was not waiting for it."""

    async def fail_job(self, job_id: str, error: str) -> bool:
        """Fails the job, cancelling its unfinished tasks; False if it had ended."""

    async def failed_tasks(self, job_id: str) -> list[FailedTask]:
        """The job's tasks that failed for good, by stage and index."""

    # -- definitions (orchestrator) --------------------------------------------

    async def register_orchestrator(
        self,
        orchestrator_id: str,
        host: str,
        version: str,
        definitions: Sequence[JobTypeDefinition],
        ttl_seconds: int,
        stopping: bool = False,
    ) -> int:
        """Says which definitions this orchestrator serves; returns how many
        parked messages were released to it."""

    async def park_job_message(
        self,
        job_id: str,
        job_type: str,
        definition: str,
        message_id: str,
        body: bytes,
        orchestrator_id: str,
    ) -> tuple[bool, str]:
        """Hands over a message for a definition this orchestrator does not
        serve: (True, reason) if parked, (False, "") if sent on to a server of it."""

    async def rebase_job(
        self, job_id: str, definition: str, total_stages: int, default_result: bool
    ) -> tuple[Job, int]:
        """Moves a job onto another definition of its type; returns it and the
        number of its parked messages released."""

    # -- tasks (worker) --------------------------------------------------------

    async def claim_tasks(
        self, worker_id: str, lease_seconds: int, claims: Sequence[TaskClaim]
    ) -> list[ClaimResult]:
        """Grants a lease per queued task whose attempt matches, in claim order."""

    async def complete_tasks(self, outcomes: Sequence[TaskOutcome]) -> list[OutcomeAck]:
        """Records outcomes (stale ones change nothing), in outcome order."""

    async def renew_leases(self, lease_seconds: int, leases: Sequence[TaskLease]) -> LeaseRenewal:
        """Extends the leases of tasks still running under those tokens."""

    async def release_tasks(self, leases: Sequence[TaskLease]) -> list[str]:
        """Hands unfinished tasks back (queued again, same attempt)."""

    async def stage_results(
        self, job_id: str, stage: int, *, from_index: int = 0, limit: int = 0
    ) -> list[StageResult]:
        """A stage's task results by task index: those from from_index on, at
        most limit of them (0: every one)."""

    async def report_progress(self, reports: Sequence[ProgressReport]) -> int:
        """Records progress of running tasks; returns how many were recorded."""

    async def heartbeat_worker(
        self, worker: WorkerInfo, ttl_seconds: int, stopping: bool = False
    ) -> None:
        """Says the worker is alive (or, with stopping, that it stops now)."""

    # -- schedules (orchestrator) ----------------------------------------------

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        """Creates a schedule whose job type and parameters the caller validated."""

    async def trigger_schedule(self, name: str, orchestrator_id: str, lease_seconds: int) -> Firing:
        """A firing now (pending, claimed by the caller), to submit and record."""

    async def claim_due_firings(
        self, orchestrator_id: str, job_types: Sequence[str], limit: int, lease_seconds: int
    ) -> tuple[list[Firing], float | None]:
        """The due firings of these job types (each tick to one caller), and the
        seconds until the next tick is due (None: no schedule of them)."""

    async def record_firing(
        self, firing: Firing, outcome: str, job_id: str = "", detail: str = ""
    ) -> bool:
        """Records a claimed firing's outcome ("submitted" or "failed")."""

    async def close(self) -> None:
        """Releases the connection."""
