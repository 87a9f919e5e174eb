"""Flow limits a job type declares: concurrency keys and rate limits.

    Stage("fetch", fetch, FromParameter("n"),
          concurrency=[ConcurrencyKey("tenant:{tenant}", limit=5)],
          rate_limit=RateLimit(per_second=20, burst=20, name="partner-api"))

Both are enforced by the state service when tasks are claimed, across every
job, job type and worker (docs/flow-control.md); nothing waits in a worker.
"""

from __future__ import annotations

import math
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from coremachine.app._errors import AppError

# Keys are stored and compared as text; longer ones are refused when planned.
MAX_KEY_CHARS = 500


@dataclass(frozen=True, slots=True)
class ConcurrencyKey:
    """At most `limit` tasks with this key run at once, whatever job (of any
    type) they belong to. `key` is a template formatted with the job's
    parameters ("tenant:{tenant}"), or a function of them returning the key."""

    key: str | Callable[[Mapping[str, Any]], str]
    limit: int

    def __post_init__(self) -> None:
        if not isinstance(self.limit, int) or self.limit < 1:
            raise AppError(f"ConcurrencyKey {self.key!r}: limit must be an integer >= 1")
        if isinstance(self.key, str):
            if not self.key:
                raise AppError("ConcurrencyKey: the key must not be empty")
            try:
                list(string.Formatter().parse(self.key))
            except ValueError as exc:
                raise AppError(
                    f"ConcurrencyKey {self.key!r}: not a valid template: {exc}"
                ) from None
        elif not callable(self.key):
            raise AppError(
                f"ConcurrencyKey: key must be a template or a function, not {self.key!r}"
            )

    def fields(self) -> list[str]:
        """The job parameters a template names (their first component)."""
        if not isinstance(self.key, str):
            return []
        names = []
        for _, field, _, _ in string.Formatter().parse(self.key):
            if field:
                names.append(field.split(".")[0].split("[")[0])
        return names

    def render(self, parameters: Mapping[str, Any]) -> str:
        """The key of a job with these parameters."""
        key = self.key.format(**parameters) if isinstance(self.key, str) else self.key(parameters)
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
            raise ValueError(
                f"concurrency key {key!r}: must be a non-empty string of at most"
                f" {MAX_KEY_CHARS} characters"
            )
        return key

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key if isinstance(self.key, str) else "by_function",
            "limit": self.limit,
        }


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `per_second` task starts per second, with bursts up to `burst`
    (default: one second's worth), global across workers. Limits with the same
    `name` are one bucket (default name: the task type's)."""

    per_second: float
    burst: int | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.per_second, int | float) or not self.per_second > 0:
            raise AppError(f"RateLimit: per_second must be > 0, got {self.per_second!r}")
        if self.burst is not None and (not isinstance(self.burst, int) or self.burst < 1):
            raise AppError(f"RateLimit: burst must be an integer >= 1, got {self.burst!r}")

    @property
    def bucket_size(self) -> int:
        return self.burst if self.burst is not None else max(1, math.ceil(self.per_second))

    def describe(self, default_name: str) -> dict[str, Any]:
        return {
            "name": self.name or default_name,
            "per_second": float(self.per_second),
            "burst": self.bucket_size,
        }
