"""The default job result: a summary of the job's stages.

A job type without an aggregator gets it as its result. The state service
records it when the last stage completes (it holds every input: the stage
summaries and the failed tasks); the orchestrator's aggregation contexts
use the same function, so both say the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def default_summary(
    job_type: str,
    stage_summaries: Mapping[str, Any],
    failed_tasks: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """{job_type, total_tasks, stages (per-stage counts), failed_tasks}."""
    return {
        "job_type": job_type,
        "total_tasks": sum(int(s.get("task_count", 0)) for s in stage_summaries.values()),
        "stages": dict(stage_summaries),
        "failed_tasks": [dict(t) for t in failed_tasks],
    }
