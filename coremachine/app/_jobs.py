"""Job types: parameters, stages, an optional aggregator, and the fingerprint
that tells one version of a definition from another."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from coremachine.app._stages import AggregateContext, Stage
from coremachine.shared.domain.ids import canonical_json


@dataclass(frozen=True, slots=True)
class JobType:
    """A job type: what `app.job(...)` defines.

    The fingerprint covers what decides how a job runs — its stages (names,
    task types, fan-out modes, queues, policies), its parameter schema and
    whether it has an aggregator — but not the code of handlers or planning
    functions: changing only those needs nothing. Bump `version` when a
    planning function changes what it plans, so running jobs keep theirs.
    """

    name: str
    parameters: type[BaseModel]
    stages: tuple[Stage, ...]
    aggregate: Callable[[AggregateContext], Any] | None = None
    description: str = ""
    version: str = ""
    app: str = ""

    def parameters_schema(self) -> dict[str, Any]:
        return self.parameters.model_json_schema()

    def definition(self) -> dict[str, Any]:
        """The definition as data: what the fingerprint is the hash of."""
        return {
            "job_type": self.name,
            "version": self.version,
            "parameters_schema": self.parameters_schema(),
            "aggregate": self.aggregate is not None,
            "stages": [_stage_definition(s) for s in self.stages],
        }

    def fingerprint(self) -> str:
        """SHA-256 of the canonical definition (the registry computes it once)."""
        return hashlib.sha256(canonical_json(self.definition()).encode()).hexdigest()


def _stage_definition(stage: Stage) -> dict[str, Any]:
    retry = stage.retry
    tolerate: Any = stage.tolerate_failures
    return {
        "name": stage.name,
        "task_type": stage.task_type,
        "fan_out": stage.fan_out.describe(),
        "queue": stage.queue or _task_queue(stage),
        "retry": None
        if retry is None
        else {
            "max_attempts": retry.max_attempts,
            "backoff_base_ms": retry.backoff_base_ms,
            "backoff_max_ms": retry.backoff_max_ms,
        },
        "tolerate_failures": "by_parameters" if callable(tolerate) else tolerate,
        "tolerate_fraction": stage.tolerate_fraction,
        "timeout": stage.timeout,
        "heartbeat_timeout": stage.heartbeat_timeout,
        "previous_results": stage.wants_previous_results,
    }


def _task_queue(stage: Stage) -> str | None:
    return None if isinstance(stage.task, str) else stage.task.queue
