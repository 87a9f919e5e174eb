"""hello_world: n greetings, then n replies; reply i answers greeting i."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coremachine.app import (
    AggregateContext,
    App,
    FromParameter,
    MatchPrevious,
    PlanContext,
    PreviousResult,
    RetryableError,
    Stage,
    TaskContext,
)
from coremachine.shared.job_summary import default_summary


def parameters_model(max_n: int) -> type[BaseModel]:
    class HelloWorldParameters(BaseModel):
        """Two-stage greeting workflow: n greetings, then n replies."""

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


async def greeting(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    index = int(params["index"])
    await _simulate_work(params)
    if random.random() < float(params.get("failure_rate", 0.0)):
        raise RetryableError(f"STOCHASTIC FAILURE in greeting {index}")
    return {"greeting": f"{params['message']} from task {index}!", "task_index": index}


async def reply(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    index = int(params["index"])
    await _simulate_work(params)
    return {"reply": f"Replying to: {params.get('greeting')}", "task_index": index}


async def _simulate_work(params: dict[str, Any]) -> None:
    delay_ms = int(params.get("delay_ms", 0))
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)


def _greeting_params(ctx: PlanContext, i: int) -> dict[str, Any]:
    return {
        "index": i,
        "message": ctx.parameters["message"],
        "failure_rate": ctx.parameters["failure_rate"],
        "delay_ms": ctx.parameters["task_delay_ms"],
    }


def _reply_params(ctx: PlanContext, previous: PreviousResult) -> dict[str, Any]:
    greeting = previous.result.get("greeting") if isinstance(previous.result, dict) else None
    return {
        "index": previous.task_index,
        "greeting": greeting,
        "delay_ms": ctx.parameters["task_delay_ms"],
    }


def _aggregate(ctx: AggregateContext) -> dict[str, Any]:
    """The default summary, with the replies in task order."""
    return {
        **default_summary(ctx.job_type, ctx.stage_summaries, ctx.failed_tasks),
        "replies": [
            r.result.get("reply") if isinstance(r.result, dict) else None for r in ctx.final_results
        ],
    }


def _tolerated(parameters: Mapping[str, Any]) -> int:
    return int(parameters.get("tolerate_failures", 0))


def register(app: App, max_n: int) -> None:
    greet = app.task("hello_world_greeting")(greeting)
    answer = app.task("hello_world_reply")(reply)
    app.job(
        "hello_world",
        description="Two-stage greeting workflow: n greetings, then n replies.",
        parameters=parameters_model(max_n),
        stages=[
            Stage(
                "greeting",
                greet,
                FromParameter("n", _greeting_params),
                tolerate_failures=_tolerated,
            ),
            Stage("reply", answer, MatchPrevious(_reply_params), tolerate_failures=_tolerated),
        ],
        aggregate=_aggregate,
    )
