"""noop: the benchmark's job, a two-stage fan-out/fan-in of handlers that do nothing."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from coremachine.app import App, FromParameter, MatchPrevious, Stage


class NoopParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(1, ge=1, le=1_000_000)
    # Distinguishes otherwise identical benchmark runs (job ids are derived from parameters).
    run: str = Field("", max_length=100)


async def noop(params: dict[str, Any]) -> dict[str, Any]:
    """Does nothing, so only orchestration is measured."""
    return {}


def register(app: App) -> None:
    task = app.task("noop")(noop)
    app.job(
        "noop",
        description="Benchmark job: n no-op tasks, then n more.",
        parameters=NoopParameters,
        stages=[
            Stage("first", task, FromParameter("n", lambda ctx, i: {})),
            Stage("second", task, MatchPrevious(lambda ctx, p: {})),
        ],
    )
