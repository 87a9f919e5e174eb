"""Stage planning and job finalization: what happens on a jobs-queue message."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from coremachine.common.v1 import common_pb2
from coremachine.services.orchestrator.claim_check import StagePayloads
from coremachine.services.orchestrator.registry import (
    AggregateContext,
    FanIn,
    JobType,
    PlanContext,
    PreviousResult,
    default_summary,
    known_task_count,
)
from coremachine.shared.messages import JobContext
from coremachine.state.v1 import state_pb2, state_pb2_grpc

log = logging.getLogger(__name__)

_STATUS_NAME = {
    common_pb2.TASK_STATUS_QUEUED: "queued",
    common_pb2.TASK_STATUS_PROCESSING: "processing",
    common_pb2.TASK_STATUS_COMPLETED: "completed",
    common_pb2.TASK_STATUS_FAILED: "failed",
    common_pb2.TASK_STATUS_CANCELLED: "cancelled",
}
TERMINAL_JOB = {
    common_pb2.JOB_STATUS_COMPLETED,
    common_pb2.JOB_STATUS_COMPLETED_WITH_ERRORS,
    common_pb2.JOB_STATUS_FAILED,
    common_pb2.JOB_STATUS_CANCELLED,
}


# Parameters per CreateStageTasks call: a quarter of the servers' 64 MiB
# message limit, since a claim-checked stage may hold thousands of payloads
# just under the threshold (192 KiB each).
CHUNK_MAX_BYTES = 16 * 1024 * 1024


class PlanningError(Exception):
    """The job type's planning or aggregation failed: the job fails."""


@dataclass(frozen=True, slots=True)
class PlannedStage:
    """A stage's task parameters (encoded, claim-checked) and its policy."""

    task_type: str
    encoded: list[bytes]
    policy: state_pb2.StagePolicy

    def new_tasks(self, indexes: range) -> list[state_pb2.NewTask]:
        return [
            state_pb2.NewTask(
                task_index=i, task_type=self.task_type, parameters_json=self.encoded[i]
            )
            for i in indexes
        ]


class Planner:
    def __init__(
        self, state: state_pb2_grpc.StateServiceStub, chunk_size: int, payloads: StagePayloads
    ) -> None:
        self.state = state
        self.chunk_size = chunk_size
        self.payloads = payloads

    async def job_and_results(
        self, job_id: str, stage: int
    ) -> tuple[common_pb2.Job, list[PreviousResult]]:
        """The job and a stage's results, read in one call (stage 0: none)."""
        if stage < 1:
            job = (await self.state.GetJob(state_pb2.GetJobRequest(job_id=job_id))).job
            return job, []
        read: common_pb2.Job | None = None
        rows = []
        async for chunk in self.state.GetStageResults(
            state_pb2.GetStageResultsRequest(job_id=job_id, stage=stage, include_job=True)
        ):
            if chunk.HasField("job"):
                read = chunk.job
            rows.extend(chunk.results)
        assert read is not None, "GetStageResults with include_job sends the job first"
        return read, await self._with_values(
            (r.task_index, _STATUS_NAME.get(r.status, "unknown"), r.result_json, r.error)
            for r in rows
        )

    async def from_context(
        self, job_id: str, job_type: str, context: JobContext
    ) -> tuple[common_pb2.Job, list[PreviousResult]]:
        """The job and results a jobs-queue message carried (see shared/messages.py)."""
        job = common_pb2.Job(
            job_id=job_id,
            job_type=job_type,
            status=common_pb2.JOB_STATUS_PROCESSING,
            total_stages=context.total_stages,
            parameters_json=json.dumps(context.parameters).encode(),
            stage_results_json=json.dumps(context.stage_summaries).encode(),
        )
        return job, await self._with_values(
            (r.task_index, r.status, (r.result_json or "").encode(), r.error)
            for r in context.results
        )

    async def _with_values(
        self, results: Iterable[tuple[int, str, bytes, str]]
    ) -> list[PreviousResult]:
        """(index, status, stored result, error) as planning sees them: results a
        worker stored by claim check are fetched, so planning and aggregators
        see values, never references."""
        listed = list(results)
        values = await self.payloads.load_many([raw for _, _, raw, _ in listed])
        return [
            PreviousResult(index, status, value, error)
            for (index, status, _, error), value in zip(listed, values, strict=True)
        ]

    async def failed_tasks(self, job_id: str) -> list[dict[str, Any]]:
        """Tasks of the job that failed for good, in stage and index order."""
        failed: list[dict[str, Any]] = []
        token = ""
        while True:
            page = await self.state.ListTasks(
                state_pb2.ListTasksRequest(
                    job_id=job_id,
                    status=common_pb2.TASK_STATUS_FAILED,
                    limit=1000,
                    page_token=token,
                )
            )
            failed += [
                {
                    "task_id": t.task_id,
                    "stage": t.stage,
                    "task_index": t.task_index,
                    "error": t.error,
                }
                for t in page.tasks
            ]
            token = page.next_page_token
            if not token:
                return failed

    async def plan_stage(
        self,
        job: common_pb2.Job,
        job_type: JobType,
        stage: int,
        previous: list[PreviousResult],
    ) -> int:
        """Plans and creates a stage's tasks from the previous stage's results;
        returns how many were created now."""
        ctx = PlanContext(
            job.job_id, job.job_type, stage, json.loads(job.parameters_json or b"{}"), previous
        )
        planned = await self._plan(ctx, job_type)
        created = 0
        # Chunks keep each transaction and message bounded; the stage's total
        # is fixed in the first one, so completions cannot finish it early.
        for indexes in _chunks(planned.encoded, self.chunk_size, CHUNK_MAX_BYTES):
            response = await self.state.CreateStageTasks(
                state_pb2.CreateStageTasksRequest(
                    job_id=job.job_id,
                    stage=stage,
                    total_tasks=len(planned.encoded),
                    tasks=planned.new_tasks(indexes),
                    policy=planned.policy,
                )
            )
            created += response.created
        return created

    async def plan_first_stage(
        self, job_id: str, job_type: JobType, parameters: dict[str, Any]
    ) -> state_pb2.StageTasks | None:
        """Stage 1 planned at submit, to be created with the job in one transaction.

        None when it does not fit one request, or planning fails: the job is
        then created with a "stage 1 ready" message and planned the usual way
        (where a planning error fails the job, and a large stage is chunked).
        """
        spec = job_type.stages[0]
        ctx = PlanContext(job_id, job_type.name, 1, parameters, [])
        hint = known_task_count(spec.fan_out, ctx)
        if hint is not None and hint > self.chunk_size:
            return None  # not worth planning twice
        try:
            planned = await self._plan(ctx, job_type)
        except Exception as exc:
            log.info("stage 1 not planned at submit (%r); it will be planned from the queue", exc)
            return None
        chunks = _chunks(planned.encoded, self.chunk_size, CHUNK_MAX_BYTES)
        if len(chunks) > 1:
            return None
        return state_pb2.StageTasks(
            total_tasks=len(planned.encoded),
            tasks=planned.new_tasks(chunks[0]),
            policy=planned.policy,
        )

    async def _plan(self, ctx: PlanContext, job_type: JobType) -> PlannedStage:
        spec = job_type.stages[ctx.stage - 1]
        try:
            planned = spec.fan_out.plan(ctx)
            if isinstance(spec.fan_out, FanIn):
                planned = [_fan_in_params(planned[0], ctx, spec.fan_out.inline_limit)]
            encoded = [json.dumps(p).encode() for p in planned]
        except Exception as exc:
            raise PlanningError(
                f"planning stage {ctx.stage} ({spec.name}) failed: {exc!r}"
            ) from exc
        # Outside the try: a blob-store outage is transient (the message is
        # retried), not a planning error that fails the job.
        encoded = await self.payloads.wrap_parameters(encoded, job_id=ctx.job_id, stage=ctx.stage)
        policy = state_pb2.StagePolicy(
            max_attempts=spec.retry.max_attempts,
            backoff_base_ms=spec.retry.backoff_base_ms,
            backoff_max_ms=spec.retry.backoff_max_ms,
            max_failed_tasks=spec.max_failed_tasks(len(encoded), ctx.parameters),
        )
        return PlannedStage(spec.task_type, encoded, policy)

    async def finalize(
        self, job: common_pb2.Job, job_type: JobType, final: list[PreviousResult]
    ) -> Any:
        """Runs the job type's aggregator (or the default summary) on the last stage's results."""
        ctx = AggregateContext(
            job.job_id,
            job.job_type,
            json.loads(job.parameters_json or b"{}"),
            json.loads(job.stage_results_json or b"{}"),
            final,
            await self.failed_tasks(job.job_id) if _any_failed(job) else [],
        )
        try:
            return (job_type.aggregate or default_summary)(ctx)
        except Exception as exc:
            raise PlanningError(f"aggregating the results failed: {exc!r}") from exc


def _fan_in_params(params: dict[str, Any], ctx: PlanContext, inline_limit: int) -> dict[str, Any]:
    results = [
        {"task_index": p.task_index, "status": p.status, "result": p.result} for p in ctx.previous
    ]
    inline = json.dumps(results)
    if len(inline) <= inline_limit:
        return {**params, "previous_results": results}
    # Too large to inline: a reference the worker resolves through the state service.
    return {
        **params,
        "previous_results": {"$stage_results": {"job_id": ctx.job_id, "stage": ctx.stage - 1}},
    }


def _chunks(encoded: list[bytes], max_count: int, max_bytes: int) -> list[range]:
    """Consecutive index ranges of at most max_count tasks and about max_bytes of parameters.

    An empty stage is one empty chunk: the call still fixes its total (zero).
    """
    chunks: list[range] = []
    start, size = 0, 0
    for i, payload in enumerate(encoded):
        if i > start and (i - start >= max_count or size + len(payload) > max_bytes):
            chunks.append(range(start, i))
            start, size = i, 0
        size += len(payload)
    chunks.append(range(start, len(encoded)))
    return chunks


def _any_failed(job: common_pb2.Job) -> bool:
    """Whether any stage recorded a failed task (saves a query when none did)."""
    summaries = json.loads(job.stage_results_json or b"{}")
    return any(stage.failed for stage in job.stages) or any(
        int(s.get("failed", 0)) for s in summaries.values() if isinstance(s, dict)
    )
