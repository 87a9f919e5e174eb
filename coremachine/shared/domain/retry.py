"""Retry policy: exponential backoff with full jitter. Pure: no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a stage retries failed tasks."""

    max_attempts: int = 4  # the first run plus 3 retries
    backoff_base_ms: int = 1000
    backoff_max_ms: int = 60_000

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.backoff_base_ms <= self.backoff_max_ms:
            raise ValueError("need 0 < backoff_base_ms <= backoff_max_ms")


def backoff_seconds(
    failed_attempt: int, base_ms: int, max_ms: int, rng: random.Random | None = None
) -> float:
    """Delay before the attempt after `failed_attempt` (1-based).

    The ceiling doubles per attempt up to max_ms; the delay is drawn uniformly
    between half the ceiling and the ceiling, so retries of a burst of failures
    spread out instead of arriving together.
    """
    ceiling = min(max_ms, base_ms * 2 ** max(failed_attempt - 1, 0))
    draw = (rng or random).uniform(0.5, 1.0)
    return ceiling * draw / 1000.0
