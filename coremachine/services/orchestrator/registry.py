"""Job types: their parameters, stages, fan-out modes and aggregation."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from coremachine.shared import job_summary
from coremachine.shared.domain.retry import RetryPolicy
from coremachine.shared.task_types import TASK_TYPES


@dataclass(frozen=True, slots=True)
class PreviousResult:
    """One task result of the previous stage, as planning sees it."""

    task_index: int
    status: str
    result: Any
    error: str


@dataclass(frozen=True, slots=True)
class PlanContext:
    job_id: str
    job_type: str
    stage: int
    parameters: Mapping[str, Any]
    # Results of the previous stage ordered by numeric task index (empty in stage 1).
    previous: Sequence[PreviousResult]

    def previous_completed(self) -> list[PreviousResult]:
        return [p for p in self.previous if p.status == "completed"]


TaskParams = dict[str, Any]


# -- fan-out modes -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FromParameter:
    """n tasks, n read from a job parameter; task i gets build(ctx, i)."""

    parameter: str
    build: Callable[[PlanContext, int], TaskParams]

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return [self.build(ctx, i) for i in range(int(ctx.parameters[self.parameter]))]


@dataclass(frozen=True, slots=True)
class MatchPrevious:
    """One task per task of the previous stage; task i gets previous task i's result."""

    build: Callable[[PlanContext, PreviousResult], TaskParams]

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return [self.build(ctx, p) for p in ctx.previous]


@dataclass(frozen=True, slots=True)
class PerItem:
    """One task per item of a list found in the previous stage's results."""

    items: Callable[[PlanContext], Sequence[Any]]
    build: Callable[[PlanContext, int, Any], TaskParams]

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return [self.build(ctx, i, item) for i, item in enumerate(self.items(ctx))]


@dataclass(frozen=True, slots=True)
class FanIn:
    """A single task receiving all previous results.

    Inlined under `inline_limit` bytes of JSON; above it the task receives a
    reference ({"$stage_results": {...}}) that the worker resolves, so large
    fan-ins never travel inside a task's parameters.
    """

    build: Callable[[PlanContext], TaskParams] = lambda ctx: {}
    inline_limit: int = 64 * 1024

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return [self.build(ctx)]


@dataclass(frozen=True, slots=True)
class Single:
    """Exactly one task."""

    build: Callable[[PlanContext], TaskParams]

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return [self.build(ctx)]


@dataclass(frozen=True, slots=True)
class Custom:
    """A Python hook plans the stage when the modes above do not fit."""

    hook: Callable[[PlanContext], list[TaskParams]]

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return self.hook(ctx)


FanOut = FromParameter | MatchPrevious | PerItem | FanIn | Single | Custom


def known_task_count(fan_out: FanOut, ctx: PlanContext) -> int | None:
    """The stage's task count when it is known without planning, else None."""
    if isinstance(fan_out, FromParameter):
        try:
            return int(ctx.parameters[fan_out.parameter])
        except (KeyError, TypeError, ValueError):
            return None
    if isinstance(fan_out, FanIn | Single):
        return 1
    if isinstance(fan_out, MatchPrevious):
        return len(ctx.previous)
    return None


@dataclass(frozen=True, slots=True)
class StageSpec:
    name: str
    task_type: str
    fan_out: FanOut
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Failed tasks the stage tolerates before the job fails: a count (-1 = all),
    # a fraction of the stage's tasks, or a function of the job's parameters.
    tolerate_failures: int | Callable[[Mapping[str, Any]], int] = 0
    tolerate_fraction: float | None = None

    def max_failed_tasks(self, task_count: int, parameters: Mapping[str, Any]) -> int:
        if self.tolerate_fraction is not None:
            return int(task_count * self.tolerate_fraction)
        if callable(self.tolerate_failures):
            return int(self.tolerate_failures(parameters))
        return self.tolerate_failures


@dataclass(frozen=True, slots=True)
class AggregateContext:
    job_id: str
    job_type: str
    parameters: Mapping[str, Any]
    # Per-stage summaries recorded by the state service (keys "1", "2", ...).
    stage_summaries: Mapping[str, Any]
    final_results: Sequence[PreviousResult]
    # Tasks of any stage that failed for good (tolerated by their stage).
    failed_tasks: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class JobType:
    name: str
    description: str
    parameters: type[BaseModel]
    stages: tuple[StageSpec, ...]
    aggregate: Callable[[AggregateContext], Any] | None = None


def default_summary(ctx: AggregateContext) -> dict[str, Any]:
    """The job result when a job type has no aggregator (the state service
    records it itself for jobs created with default_result)."""
    return job_summary.default_summary(ctx.job_type, ctx.stage_summaries, ctx.failed_tasks)


class RegistryError(RuntimeError):
    """The job registry is inconsistent (checked at start-up)."""


class JobRegistry:
    def __init__(self, job_types: Sequence[JobType]) -> None:
        self._types = {jt.name: jt for jt in job_types}
        if len(self._types) != len(job_types):
            raise RegistryError("two job types share a name")

    def check(self, known_task_types: frozenset[str] = TASK_TYPES) -> None:
        """Fails fast if a stage uses a task type no worker handles."""
        for jt in self._types.values():
            if not jt.stages:
                raise RegistryError(f"job type {jt.name} has no stages")
            for stage in jt.stages:
                if stage.task_type not in known_task_types:
                    raise RegistryError(
                        f"job type {jt.name} stage {stage.name!r} uses unknown task type"
                        f" {stage.task_type!r}"
                    )

    def get(self, name: str) -> JobType | None:
        return self._types.get(name)

    def names(self) -> list[str]:
        return sorted(self._types)

    def all(self) -> list[JobType]:
        return [self._types[n] for n in self.names()]
