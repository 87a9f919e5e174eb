"""Stages and how they fan out: what a job type's definition is made of.

A stage runs one task type over a number of tasks; its fan-out mode says how
many and with which parameters, from the job's parameters (stage 1) or from
the previous stage's results. Planning and aggregation see plain values
(`PlanContext`, `AggregateContext`), never protobuf.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from coremachine.app._flow import ConcurrencyKey, RateLimit
from coremachine.shared.domain.retry import RetryPolicy

if TYPE_CHECKING:
    from coremachine.app._tasks import TaskType

TaskParams = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PreviousResult:
    """One task result of the previous stage, as planning and handlers see it."""

    task_index: int
    status: str  # "completed", "failed" or "cancelled"
    result: Any
    error: str = ""


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What a fan-out mode plans a stage from."""

    job_id: str
    job_type: str
    stage: int
    # The job's validated parameters, as JSON values.
    parameters: Mapping[str, Any]
    # Results of the previous stage ordered by task index (empty in stage 1);
    # for MatchPrevious, the results of the page of tasks being planned.
    previous: Sequence[PreviousResult]
    # The job type's parameter model, to read `params` as typed values.
    model: type[BaseModel] | None = None

    @property
    def params(self) -> Any:
        """The job's parameters as an instance of the job type's pydantic model."""
        if self.model is None:
            raise RuntimeError("this context carries no parameter model")
        return self.model.model_validate(dict(self.parameters))

    def previous_completed(self) -> list[PreviousResult]:
        return [p for p in self.previous if p.status == "completed"]


# -- fan-out modes -------------------------------------------------------------


def _index_params(ctx: PlanContext, i: int) -> TaskParams:
    return {"index": i}


def _previous_params(ctx: PlanContext, previous: PreviousResult) -> TaskParams:
    return {"index": previous.task_index, "previous": previous.result}


def _item_params(ctx: PlanContext, i: int, item: Any) -> TaskParams:
    return {"index": i, "item": item}


def _no_params(ctx: PlanContext) -> TaskParams:
    return {}


@dataclass(frozen=True, slots=True)
class FromParameter:
    """n tasks, n read from a job parameter; task i gets build(ctx, i)."""

    parameter: str
    build: Callable[[PlanContext, int], TaskParams] = _index_params

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return [self.build(ctx, i) for i in range(int(ctx.parameters[self.parameter]))]

    def plan_page(self, ctx: PlanContext, indexes: range) -> list[TaskParams]:
        """The parameters of tasks `indexes` alone: a large stage is planned
        page by page, so that its million specs are never in memory at once."""
        return [self.build(ctx, i) for i in indexes]

    def known_count(self, ctx: PlanContext) -> int | None:
        try:
            return int(ctx.parameters[self.parameter])
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> dict[str, Any]:
        return {"mode": "from_parameter", "parameter": self.parameter}


@dataclass(frozen=True, slots=True)
class MatchPrevious:
    """One task per task of the previous stage; task i gets build(ctx, previous task i).

    A stage too large for one message is planned page by page: `build` then
    sees in `ctx.previous` only the page's results (those of the tasks being
    planned), so that the orchestrator never holds a million of them.
    """

    build: Callable[[PlanContext, PreviousResult], TaskParams] = _previous_params

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return [self.build(ctx, p) for p in ctx.previous]

    def plan_page(self, ctx: PlanContext, indexes: range) -> list[TaskParams]:
        """The parameters of tasks `indexes`; ctx.previous holds the results of
        the previous stage's tasks of the same indexes, in order."""
        return [self.build(ctx, p) for p in ctx.previous]

    def known_count(self, ctx: PlanContext) -> int | None:
        return len(ctx.previous)

    def describe(self) -> dict[str, Any]:
        return {"mode": "match_previous"}


@dataclass(frozen=True, slots=True)
class PerItem:
    """One task per item of a list found in the previous stage's results."""

    items: Callable[[PlanContext], Sequence[Any]]
    build: Callable[[PlanContext, int, Any], TaskParams] = _item_params

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return [self.build(ctx, i, item) for i, item in enumerate(self.items(ctx))]

    def known_count(self, ctx: PlanContext) -> int | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"mode": "per_item"}


@dataclass(frozen=True, slots=True)
class FanIn:
    """A single task that receives every result of the previous stage
    (`ctx.previous_results` in its handler, fetched by the worker)."""

    build: Callable[[PlanContext], TaskParams] = _no_params

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return [self.build(ctx)]

    def known_count(self, ctx: PlanContext) -> int | None:
        return 1

    def describe(self) -> dict[str, Any]:
        return {"mode": "fan_in"}


@dataclass(frozen=True, slots=True)
class Single:
    """Exactly one task."""

    build: Callable[[PlanContext], TaskParams] = _no_params

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return [self.build(ctx)]

    def known_count(self, ctx: PlanContext) -> int | None:
        return 1

    def describe(self) -> dict[str, Any]:
        return {"mode": "single"}


@dataclass(frozen=True, slots=True)
class Custom:
    """A planning hook, when the modes above do not fit: the hook returns the tasks' parameters."""

    hook: Callable[[PlanContext], list[TaskParams]]

    def plan(self, ctx: PlanContext) -> list[TaskParams]:
        return list(self.hook(ctx))

    def known_count(self, ctx: PlanContext) -> int | None:
        return None

    def describe(self) -> dict[str, Any]:
        return {"mode": "custom"}


FanOut = FromParameter | MatchPrevious | PerItem | FanIn | Single | Custom


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of a job type.

    task: the task type (its name, or the function `@app.task` returned).
    queue: where the stage's tasks go (a worker pool); default: the task
        type's queue, else the service's TASKS_QUEUE.
    retry: attempts and backoff; default: the orchestrator's
        TASK_MAX_RETRIES / TASK_RETRY_BASE_MS / TASK_RETRY_MAX_MS.
    tolerate_failures: failed tasks the stage accepts before the job fails
        (-1: any number), or a function of the job's parameters;
        tolerate_fraction: the same as a fraction of the stage's tasks.
    timeout: seconds one attempt may run before it fails (retryable).
    heartbeat_timeout: when set, a task that does not call ctx.heartbeat()
        within this many seconds loses its lease and is retried elsewhere.
    previous_results: the handlers get the previous stage's results as
        ctx.previous_results (always so for FanIn).
    concurrency: ConcurrencyKey(s) from the job's parameters: at most
        `limit` tasks with a key run at once, across every job and job type.
    rate_limit: a RateLimit on the stage's task starts; default: the task
        type's.
    """

    name: str
    task: str | TaskType
    fan_out: FanOut = Single()
    queue: str | None = None
    retry: RetryPolicy | None = None
    tolerate_failures: int | Callable[[Mapping[str, Any]], int] = 0
    tolerate_fraction: float | None = None
    timeout: float | None = None
    heartbeat_timeout: float | None = None
    previous_results: bool = False
    concurrency: tuple[ConcurrencyKey, ...] = ()
    rate_limit: RateLimit | None = None

    def __post_init__(self) -> None:
        # A list is fine to write; a tuple keeps the stage hashable and frozen.
        if not isinstance(self.concurrency, tuple):
            object.__setattr__(self, "concurrency", tuple(self.concurrency))

    @property
    def task_type(self) -> str:
        return self.task if isinstance(self.task, str) else self.task.name

    @property
    def wants_previous_results(self) -> bool:
        return self.previous_results or isinstance(self.fan_out, FanIn)

    def max_failed_tasks(self, task_count: int, parameters: Mapping[str, Any]) -> int:
        if self.tolerate_fraction is not None:
            return int(task_count * self.tolerate_fraction)
        if callable(self.tolerate_failures):
            return int(self.tolerate_failures(parameters))
        return self.tolerate_failures


@dataclass(frozen=True, slots=True)
class AggregateContext:
    """What a job type's aggregator turns into the job's result."""

    job_id: str
    job_type: str
    parameters: Mapping[str, Any]
    # Per-stage summaries recorded by the state service (keys "1", "2", ...).
    stage_summaries: Mapping[str, Any]
    final_results: Sequence[PreviousResult]
    # Tasks of any stage that failed for good (tolerated by their stage).
    failed_tasks: Sequence[Mapping[str, Any]] = ()
