"""Stage planning and job finalization: what happens on a jobs-queue message.

The planner runs a job type's fan-out modes and aggregator (user code, from
the loaded apps) on plain values and hands the state service domain
objects through the state-client port; no protobuf here.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from coremachine.app import (
    AggregateContext,
    FromParameter,
    JobType,
    MatchPrevious,
    PlanContext,
    PreviousResult,
    Stage,
)
from coremachine.app._jobs import effective_rate_limit
from coremachine.app._registry import Registry
from coremachine.services.orchestrator.claim_check import StagePayloads
from coremachine.services.orchestrator.metrics import OrchestratorMetrics
from coremachine.shared import tracing
from coremachine.shared.domain.jobs import Job, NewTask, RateLimitPolicy, StagePlan, StagePolicy
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.domain.statuses import JobStatus
from coremachine.shared.job_summary import default_summary
from coremachine.shared.messages import JobContext
from coremachine.shared.state_client import StateClient

log = logging.getLogger(__name__)

# Threads that run the job types' planning and aggregation code.
PLANNING_THREADS = 4

T = TypeVar("T")

# Parameters per CreateStageTasks call: a quarter of the servers' 64 MiB
# message limit, since a claim-checked stage may hold thousands of payloads
# just under the threshold (192 KiB each).
CHUNK_MAX_BYTES = 16 * 1024 * 1024


class PlanningError(Exception):
    """The job type's planning or aggregation failed: the job fails."""


@dataclass(frozen=True, slots=True)
class PlannerDefaults:
    """What a stage gets when its definition leaves it open."""

    retry: RetryPolicy
    tasks_queue: str
    chunk_size: int


class Planner:
    """Plans stages and finalizes jobs with the job types' own code.

    That code (fan-out builds and hooks, aggregators) runs in a pool of
    `planning_threads` threads, not on the event loop: a hook that takes
    seconds must not stall the renewal of its message's lock, the submits
    this orchestrator serves or the other jobs' messages; with several
    threads, a small job's planning does not queue behind a heavy one's.
    """

    def __init__(
        self,
        state: StateClient,
        registry: Registry,
        defaults: PlannerDefaults,
        payloads: StagePayloads,
        metrics: OrchestratorMetrics | None = None,
        planning_threads: int = PLANNING_THREADS,
    ) -> None:
        self.state = state
        self.registry = registry
        self.defaults = defaults
        self.payloads = payloads
        self.metrics = metrics or OrchestratorMetrics()
        self._threads = ThreadPoolExecutor(planning_threads, thread_name_prefix="planning")

    def close(self) -> None:
        """Stops the planning threads (a hook still running finishes on its own)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in a planning thread, with this task's context (logs, trace)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, functools.partial(context.run, fn, *args)
        )

    # -- reading what planning needs --------------------------------------------

    async def job_and_results(self, job_id: str, stage: int) -> tuple[Job, list[PreviousResult]]:
        """The job and a stage's results, read in one call (stage 0: none)."""
        job, rows = await self.state.job_and_stage_results(job_id, stage)
        return job, await self._with_values(
            (r.task_index, r.status.value, r.result_json, r.error) for r in rows
        )

    async def from_context(
        self, job_id: str, job_type: str, context: JobContext
    ) -> tuple[Job, list[PreviousResult]]:
        """The job and results a jobs-queue message carried (see shared/messages.py)."""
        job = Job(
            job_id=job_id,
            job_type=job_type,
            status=JobStatus.PROCESSING,
            stage=0,
            total_stages=context.total_stages,
            parameters=context.parameters,
            stage_summaries=context.stage_summaries,
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

    # -- planning ----------------------------------------------------------------

    def reads_previous_in_pages(self, job_type: JobType, stage: int) -> bool:
        """Whether plan_stage reads the previous stage's results itself, a page
        at a time (MatchPrevious: task i needs only result i)."""
        return 1 <= stage <= len(job_type.stages) and isinstance(
            job_type.stages[stage - 1].fan_out, MatchPrevious
        )

    async def plan_stage(
        self,
        job: Job,
        job_type: JobType,
        stage: int,
        previous: list[PreviousResult] | None,
    ) -> int:
        """Plans and creates a stage's tasks; returns how many were created now.

        previous: the previous stage's results, or None to have them read here
        (a page at a time where the stage's fan-out allows, see
        reads_previous_in_pages).
        """
        if not 1 <= stage <= len(job_type.stages):
            raise PlanningError(f"job type {job_type.name} has no stage {stage}")
        spec = job_type.stages[stage - 1]
        if previous is None and not self.reads_previous_in_pages(job_type, stage):
            previous = (await self.job_and_results(job.job_id, stage - 1))[1]
        ctx = self._context(job.job_id, job_type, stage, job.parameters, previous or [])
        total = _paged_total(spec, job, ctx, previous)
        if total is None:
            planned = await self._plan(ctx, job_type)
            return await self._create(job.job_id, stage, planned.total_tasks, planned)
        return await self._plan_in_pages(ctx, job_type, total, read_previous=previous is None)

    async def _plan_in_pages(
        self, ctx: PlanContext, job_type: JobType, total: int, *, read_previous: bool
    ) -> int:
        """A FromParameter or MatchPrevious stage planned and created one page
        (STAGE_CREATE_CHUNK_SIZE tasks) at a time: the orchestrator holds one
        page of results and specs, not the whole stage. The stage's total is
        fixed by the first page's call, so completions cannot finish it early;
        a replay after a crash re-creates nothing (creation is idempotent by
        task index). A planning error on a later page fails the job like one
        on the first (the tasks created by then are cancelled with it)."""
        spec = job_type.stages[ctx.stage - 1]
        fan_out = spec.fan_out
        assert isinstance(fan_out, FromParameter | MatchPrevious)
        policy = self._policy(job_type, spec, total, ctx)
        page_size = self.defaults.chunk_size
        created, planning_seconds = 0, 0.0
        with tracing.span(
            f"plan stage {ctx.stage}",
            attributes=self._span_attributes(ctx, job_type)
            | {"coremachine.stage.task_count": total}
            if tracing.enabled()
            else None,
        ):
            for start in range(0, max(total, 1), page_size):
                indexes = range(start, min(start + page_size, total))
                page_ctx = ctx
                if read_previous:
                    page_ctx = replace(ctx, previous=await self._previous_page(ctx, indexes))
                elif isinstance(fan_out, MatchPrevious):
                    page_ctx = replace(ctx, previous=ctx.previous[indexes.start : indexes.stop])
                started = time.perf_counter()
                try:
                    encoded = await self._in_thread(_encoded, fan_out.plan_page, page_ctx, indexes)
                except Exception as exc:
                    raise PlanningError(
                        f"planning stage {ctx.stage} ({spec.name}) failed: {exc!r}"
                    ) from exc
                planning_seconds += time.perf_counter() - started
                encoded = await self.payloads.wrap_parameters(
                    encoded, job_id=ctx.job_id, stage=ctx.stage, first_index=start
                )
                tasks = tuple(
                    NewTask(i, spec.task_type, e) for i, e in zip(indexes, encoded, strict=True)
                )
                if tasks:
                    self.metrics.tasks_planned.labels(
                        job_type.name, spec.task_type, policy.queue
                    ).inc(len(tasks))
                created += await self._create(
                    ctx.job_id, ctx.stage, total, StagePlan(total, tasks, policy)
                )
        self.metrics.planning.labels(job_type.name).observe(planning_seconds)
        self.metrics.stage_plans.labels(job_type.name).inc()
        return created

    async def _previous_page(self, ctx: PlanContext, indexes: range) -> list[PreviousResult]:
        """The previous stage's results of tasks `indexes`, with their values."""
        if not indexes:
            return []
        rows = await self.state.stage_results(
            ctx.job_id, ctx.stage - 1, from_index=indexes.start, limit=len(indexes)
        )
        if [r.task_index for r in rows] != list(indexes):
            # A stage's tasks are created dense (0..total-1) before it can
            # complete; a gap is a fault to retry, not the job type's error.
            raise RuntimeError(
                f"stage {ctx.stage - 1} of job {ctx.job_id}: results of tasks"
                f" {indexes.start}..{indexes.stop - 1} are incomplete"
            )
        return await self._with_values(
            (r.task_index, r.status.value, r.result_json, r.error) for r in rows
        )

    async def _create(self, job_id: str, stage: int, total: int, plan: StagePlan) -> int:
        """Creates a stage's (page of) tasks in calls of bounded size and count."""
        created = 0
        for indexes in _chunks(plan, self.defaults.chunk_size, CHUNK_MAX_BYTES):
            chunk = StagePlan(total, plan.tasks[indexes.start : indexes.stop], plan.policy)
            created += await self.state.create_stage_tasks(job_id, stage, chunk)
        return created

    async def plan_first_stage(
        self, job_id: str, job_type: JobType, parameters: dict[str, Any]
    ) -> StagePlan | None:
        """Stage 1 planned at submit, to be created with the job in one transaction.

        None when it does not fit one request, or planning fails: the job is
        then created with a "stage 1 ready" message and planned the usual way
        (where a planning error fails the job, and a large stage is chunked).
        """
        ctx = self._context(job_id, job_type, 1, parameters, [])
        hint = job_type.stages[0].fan_out.known_count(ctx)
        if hint is not None and hint > self.defaults.chunk_size:
            return None  # not worth planning twice
        try:
            planned = await self._plan(ctx, job_type)
        except Exception as exc:
            log.info("stage 1 not planned at submit (%r); it will be planned from the queue", exc)
            return None
        if len(_chunks(planned, self.defaults.chunk_size, CHUNK_MAX_BYTES)) > 1:
            return None
        return planned

    def _context(
        self,
        job_id: str,
        job_type: JobType,
        stage: int,
        parameters: dict[str, Any],
        previous: list[PreviousResult],
    ) -> PlanContext:
        return PlanContext(job_id, job_type.name, stage, parameters, previous, job_type.parameters)

    async def _plan(self, ctx: PlanContext, job_type: JobType) -> StagePlan:
        if not 1 <= ctx.stage <= len(job_type.stages):
            raise PlanningError(f"job type {job_type.name} has no stage {ctx.stage}")
        attributes = self._span_attributes(ctx, job_type) if tracing.enabled() else None
        started = time.perf_counter()
        with tracing.span(f"plan stage {ctx.stage}", attributes=attributes) as span:
            plan = await self._plan_stage(ctx, job_type)
            tracing.set_attributes(span, {"coremachine.stage.task_count": plan.total_tasks})
        self.metrics.planning.labels(job_type.name).observe(time.perf_counter() - started)
        self.metrics.stage_plans.labels(job_type.name).inc()
        if plan.tasks:
            self.metrics.tasks_planned.labels(
                job_type.name, plan.tasks[0].task_type, plan.policy.queue
            ).inc(len(plan.tasks))
        return plan

    def _span_attributes(self, ctx: PlanContext, job_type: JobType) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "coremachine.job.id": ctx.job_id,
            "coremachine.job.type": job_type.name,
            "coremachine.stage": ctx.stage,
        }
        if tracing.record_parameters():
            attributes["coremachine.job.parameters"] = json.dumps(ctx.parameters)[:4096]
        return attributes

    async def _plan_stage(self, ctx: PlanContext, job_type: JobType) -> StagePlan:
        spec = job_type.stages[ctx.stage - 1]
        try:
            encoded = await self._in_thread(_encoded, spec.fan_out.plan, ctx)
        except Exception as exc:
            raise PlanningError(
                f"planning stage {ctx.stage} ({spec.name}) failed: {exc!r}"
            ) from exc
        # Outside the try: a blob-store outage is transient (the message is
        # retried), not a planning error that fails the job.
        encoded = await self.payloads.wrap_parameters(encoded, job_id=ctx.job_id, stage=ctx.stage)
        tasks = tuple(NewTask(i, spec.task_type, e) for i, e in enumerate(encoded))
        return StagePlan(len(tasks), tasks, self._policy(job_type, spec, len(tasks), ctx))

    def _policy(
        self, job_type: JobType, spec: Stage, task_count: int, ctx: PlanContext
    ) -> StagePolicy:
        try:
            max_failed = spec.max_failed_tasks(task_count, ctx.parameters)
        except Exception as exc:
            raise PlanningError(
                f"stage {ctx.stage} ({spec.name}) tolerance failed: {exc!r}"
            ) from exc
        # The stage's concurrency keys (the job type's, then its own) as this
        # job's parameters make them; one key declared twice keeps the lower limit.
        limits: dict[str, int] = {}
        for declared in (*job_type.concurrency, *spec.concurrency):
            try:
                key = declared.render(ctx.parameters)
            except Exception as exc:
                raise PlanningError(
                    f"stage {ctx.stage} ({spec.name}) concurrency key {declared.key!r}"
                    f" failed: {exc!r}"
                ) from exc
            limits[key] = min(limits.get(key, declared.limit), declared.limit)
        rate = effective_rate_limit(spec)
        return StagePolicy(
            retry=spec.retry or self.defaults.retry,
            max_failed_tasks=max_failed,
            queue=self.registry.queue_of(spec, self.defaults.tasks_queue),
            task_timeout_ms=int((spec.timeout or 0) * 1000),
            heartbeat_timeout_ms=int((spec.heartbeat_timeout or 0) * 1000),
            previous_results=spec.wants_previous_results,
            concurrency=tuple(sorted(limits.items())),
            rate_limit=RateLimitPolicy(**rate.describe(spec.task_type)) if rate else None,
        )

    # -- finalizing --------------------------------------------------------------

    async def finalize(self, job: Job, job_type: JobType, final: list[PreviousResult]) -> Any:
        """Runs the job type's aggregator (or the default summary) on the last stage's results."""
        failed = await self.state.failed_tasks(job.job_id) if job.any_failed() else []
        ctx = AggregateContext(
            job.job_id,
            job.job_type,
            job.parameters,
            job.stage_summaries,
            final,
            [
                {
                    "task_id": t.task_id,
                    "stage": t.stage,
                    "task_index": t.task_index,
                    "error": t.error,
                }
                for t in failed
            ],
        )
        with tracing.span(
            "finalize job",
            attributes={"coremachine.job.id": job.job_id, "coremachine.job.type": job.job_type}
            if tracing.enabled()
            else None,
        ):
            try:
                if job_type.aggregate is None:
                    return default_summary(ctx.job_type, ctx.stage_summaries, ctx.failed_tasks)
                return await self._in_thread(job_type.aggregate, ctx)
            except Exception as exc:
                raise PlanningError(f"aggregating the results failed: {exc!r}") from exc


def _encoded(plan: Callable[..., list[Any]], *args: Any) -> list[bytes]:
    """A fan-out's task parameters as JSON (in the planning thread, like the plan)."""
    return [json.dumps(p).encode() for p in plan(*args)]


def _paged_total(
    spec: Stage, job: Job, ctx: PlanContext, previous: list[PreviousResult] | None
) -> int | None:
    """The task count of a stage planned in pages, or None when its fan-out
    mode plans the whole stage at once (or its count is not known up front:
    the whole planning then reports the error)."""
    if isinstance(spec.fan_out, FromParameter):
        count = spec.fan_out.known_count(ctx)
        return None if count is None else max(count, 0)
    if isinstance(spec.fan_out, MatchPrevious):
        if previous is not None:
            return len(previous)
        return next((s.task_count for s in job.stages if s.stage == ctx.stage - 1), 0)
    return None


def _chunks(plan: StagePlan, max_count: int, max_bytes: int) -> list[range]:
    """Consecutive index ranges of at most max_count tasks and about max_bytes of parameters.

    An empty stage is one empty chunk: the call still fixes its total (zero).
    """
    chunks: list[range] = []
    start, size = 0, 0
    for i, task in enumerate(plan.tasks):
        if i > start and (i - start >= max_count or size + len(task.parameters_json) > max_bytes):
            chunks.append(range(start, i))
            start, size = i, 0
        size += len(task.parameters_json)
    chunks.append(range(start, len(plan.tasks)))
    return chunks
