"""noop: the benchmark's job, a two-stage fan-out/fan-in of handlers that do nothing."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from coremachine.services.orchestrator.registry import (
    FromParameter,
    JobType,
    MatchPrevious,
    StageSpec,
)


class NoopParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = Field(1, ge=1, le=1_000_000)
    # Distinguishes otherwise identical benchmark runs (job ids are derived from parameters).
    run: str = Field("", max_length=100)


def noop() -> JobType:
    return JobType(
        name="noop",
        description="Benchmark job: n no-op tasks, then n more.",
        parameters=NoopParameters,
        stages=(
            StageSpec("first", "noop", FromParameter("n", lambda ctx, i: {})),
            StageSpec("second", "noop", MatchPrevious(lambda ctx, p: {})),
        ),
    )
