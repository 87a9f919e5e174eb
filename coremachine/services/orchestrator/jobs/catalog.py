"""The job types this orchestrator serves."""

from __future__ import annotations

from coremachine.services.orchestrator.jobs.container_contents import list_container_contents
from coremachine.services.orchestrator.jobs.container_summary import summarize_container
from coremachine.services.orchestrator.jobs.diamond import diamond
from coremachine.services.orchestrator.jobs.hello_world import hello_world
from coremachine.services.orchestrator.jobs.noop import noop
from coremachine.services.orchestrator.registry import JobRegistry
from coremachine.services.orchestrator.settings import OrchestratorSettings
from coremachine.shared.domain.retry import RetryPolicy


def build_registry(settings: OrchestratorSettings) -> JobRegistry:
    retry = RetryPolicy(
        max_attempts=settings.task_max_retries + 1,
        backoff_base_ms=settings.retry_base_ms,
        backoff_max_ms=settings.retry_max_ms,
    )
    return JobRegistry(
        [
            hello_world(settings.hello_world_max_n, retry),
            diamond(),
            noop(),
            summarize_container(retry),
            list_container_contents(retry),
        ]
    )
