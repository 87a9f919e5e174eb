"""A test app (COREMACHINE_APPS=tests.telemetry.telemetry_app:app) for the telemetry tests.

`traced`: n tasks, then n replies. Task `flaky` fails once (retryable) on its
first attempt; task `slow` sleeps `slow_seconds` on its first attempt (long
enough to kill its worker mid-task), heartbeating. Every handler opens a
span of its own with the OpenTelemetry API, as user code would.
"""

from __future__ import annotations

import asyncio
from typing import Any

from opentelemetry import trace
from pydantic import BaseModel, ConfigDict, Field

from coremachine.app import App, FromParameter, MatchPrevious, RetryPolicy, Stage, TaskContext

app = App("telemetry_test")


class TracedParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(3, ge=1, le=1000)
    flaky: int = Field(-1, description="index of the task that fails its first attempt")
    slow: int = Field(-1, description="index of the task whose first attempt is slow")
    slow_seconds: float = Field(0.0, ge=0, le=600)
    tag: str = ""


@app.task("traced_work")
async def work(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    with trace.get_tracer("telemetry_test.handler").start_as_current_span("handler work") as span:
        span.set_attribute("test.task_index", ctx.task_index)
        if ctx.task_index == params["flaky"] and ctx.attempt == 1:
            raise RuntimeError("flaky on purpose")
        if ctx.task_index == params["slow"] and ctx.attempt == 1:
            for _ in range(int(params["slow_seconds"] * 10)):
                ctx.heartbeat()
                await asyncio.sleep(0.1)
    return {"index": ctx.task_index, "attempt": ctx.attempt}


@app.task("traced_reply")
def reply(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    # A sync handler (run on a worker thread): its span nests under the task's too.
    with trace.get_tracer("telemetry_test.handler").start_as_current_span("handler reply"):
        return {"reply_to": params["index"]}


app.job(
    "traced",
    description="Two stages; one flaky task, one slow one (telemetry tests).",
    parameters=TracedParameters,
    stages=[
        Stage(
            "work",
            work,
            FromParameter(
                "n",
                lambda ctx, i: {
                    "i": i,
                    "flaky": ctx.parameters["flaky"],
                    "slow": ctx.parameters["slow"],
                    "slow_seconds": ctx.parameters["slow_seconds"],
                },
            ),
            retry=RetryPolicy(max_attempts=3, backoff_base_ms=50, backoff_max_ms=200),
        ),
        Stage("reply", reply, MatchPrevious(lambda ctx, p: {"index": p.task_index})),
    ],
)
