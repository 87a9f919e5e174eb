"""hello_world: n greetings, then n replies; reply i answers greeting i."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coremachine.services.orchestrator.registry import (
    AggregateContext,
    FromParameter,
    JobType,
    MatchPrevious,
    PlanContext,
    PreviousResult,
    StageSpec,
    default_summary,
)
from coremachine.shared.domain.retry import RetryPolicy


def parameters_model(max_n: int) -> type[BaseModel]:
    class HelloWorldParameters(BaseModel):
        model_config = ConfigDict(extra="forbid")

        n: int = Field(3, ge=1, le=max_n, description="number of greetings (and replies)")
        message: str = Field("Hello World", max_length=1000)
        failure_rate: float = Field(
            0.0, ge=0.0, le=1.0, description="probability that a greeting fails (testing)"
        )
        tolerate_failures: int = Field(
            0, ge=-1, description="tasks per stage that may fail for good (-1: any number)"
        )
        task_delay_ms: int = Field(
            0, ge=0, le=600_000, description="simulated work per task, in milliseconds"
        )

    return HelloWorldParameters


def _greeting(ctx: PlanContext, i: int) -> dict[str, Any]:
    return {
        "index": i,
        "message": ctx.parameters["message"],
        "failure_rate": ctx.parameters["failure_rate"],
        "delay_ms": ctx.parameters["task_delay_ms"],
    }


def _reply(ctx: PlanContext, previous: PreviousResult) -> dict[str, Any]:
    greeting = previous.result.get("greeting") if isinstance(previous.result, dict) else None
    return {
        "index": previous.task_index,
        "greeting": greeting,
        "delay_ms": ctx.parameters["task_delay_ms"],
    }


def _aggregate(ctx: AggregateContext) -> dict[str, Any]:
    """The default summary, with the replies in task order."""
    return {
        **default_summary(ctx),
        "replies": [
            r.result.get("reply") if isinstance(r.result, dict) else None for r in ctx.final_results
        ],
    }


def _tolerated(parameters: Mapping[str, Any]) -> int:
    return int(parameters.get("tolerate_failures", 0))


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
                tolerate_failures=_tolerated,
            ),
            StageSpec(
                "reply",
                "hello_world_reply",
                MatchPrevious(_reply),
                retry=retry,
                tolerate_failures=_tolerated,
            ),
        ),
        aggregate=_aggregate,
    )
