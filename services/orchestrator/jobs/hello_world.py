"""hello_world: n greetings, then n replies; reply i answers greeting i."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.orchestrator.registry import (
    AggregateContext,
    FromParameter,
    JobType,
    MatchPrevious,
    PlanContext,
    PreviousResult,
    StageSpec,
)
from shared.domain.retry import RetryPolicy


def parameters_model(max_n: int) -> type[BaseModel]:
    class HelloWorldParameters(BaseModel):
        model_config = ConfigDict(extra="forbid")

        n: int = Field(3, ge=1, le=max_n, description="number of greetings (and replies)")
        message: str = Field("Hello World", max_length=1000)
        failure_rate: float = Field(
            0.0, ge=0.0, le=1.0, description="probability that a greeting fails (testing)"
        )
        tolerate_failures: int = Field(
            0, ge=-1, description="greetings that may fail for good without failing the job"
        )

    return HelloWorldParameters


def _greeting(ctx: PlanContext, i: int) -> dict[str, Any]:
    return {
        "index": i,
        "message": ctx.parameters["message"],
        "failure_rate": ctx.parameters["failure_rate"],
    }


def _reply(ctx: PlanContext, previous: PreviousResult) -> dict[str, Any]:
    greeting = previous.result.get("greeting") if isinstance(previous.result, dict) else None
    return {"index": previous.task_index, "greeting": greeting}


def _aggregate(ctx: AggregateContext) -> dict[str, Any]:
    return {
        "job_type": ctx.job_type,
        "total_tasks": sum(int(s.get("task_count", 0)) for s in ctx.stage_summaries.values()),
        "stages": dict(ctx.stage_summaries),
        "replies": [
            r.result.get("reply") if isinstance(r.result, dict) else None for r in ctx.final_results
        ],
        "failed_tasks": [
            {"task_index": r.task_index, "error": r.error}
            for r in ctx.final_results
            if r.status != "completed"
        ],
    }


def hello_world(max_n: int, retry: RetryPolicy) -> JobType:
    return JobType(
        name="hello_world",
        description="Two-stage greeting workflow: n greetings, then n replies.",
        parameters=parameters_model(max_n),
        stages=(
            StageSpec(
                "greeting",
                "hello_world_greeting",
                FromParameter("n", _greeting),
                retry=retry,
            ),
            StageSpec("reply", "hello_world_reply", MatchPrevious(_reply), retry=retry),
        ),
        aggregate=_aggregate,
    )
