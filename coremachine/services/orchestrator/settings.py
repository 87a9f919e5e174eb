"""Orchestrator settings (environment variables; see README "Configuration")."""

from __future__ import annotations

import os
import socket

from pydantic import Field

from coremachine.shared.settings import CommonSettings


class OrchestratorSettings(CommonSettings):
    grpc_port: int = Field(50062, ge=0, le=65535, validation_alias="ORCHESTRATOR_GRPC_PORT")
    metrics_port: int = Field(9462, ge=0, le=65535, validation_alias="ORCHESTRATOR_METRICS_PORT")
    state_address: str = Field("localhost:50061", validation_alias="STATE_ADDRESS")
    # The apps whose job types this orchestrator serves ("package.module:app",
    # comma-separated); unset: every app in the `coremachine.apps` entry points.
    apps: str | None = Field(None, validation_alias="COREMACHINE_APPS")
    orchestrator_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}",
        validation_alias="ORCHESTRATOR_ID",
    )
    # How often it re-registers the definitions it serves (its heartbeat);
    # a registration holds three times as long.
    registration_seconds: float = Field(
        10.0, gt=0, le=3600, validation_alias="ORCHESTRATOR_REGISTRATION_SECONDS"
    )
    # The retry policy of stages that do not declare one.
    task_max_retries: int = Field(3, ge=0, le=20, validation_alias="TASK_MAX_RETRIES")
    retry_base_ms: int = Field(1000, ge=1, validation_alias="TASK_RETRY_BASE_MS")
    retry_max_ms: int = Field(60_000, ge=1, validation_alias="TASK_RETRY_MAX_MS")
    create_chunk_size: int = Field(2000, ge=1, validation_alias="STAGE_CREATE_CHUNK_SIZE")
    consumer_batch: int = Field(16, ge=1, validation_alias="ORCHESTRATOR_BATCH_SIZE")
    # Jobs-queue messages handled at once (each a stage to plan or a job to
    # finalize): a long planning takes one of them, not the whole consumer.
    consumer_concurrency: int = Field(
        64, ge=1, le=10_000, validation_alias="ORCHESTRATOR_CONCURRENCY"
    )
    # Threads running the job types' planning functions and aggregators.
    planning_threads: int = Field(4, ge=1, le=64, validation_alias="ORCHESTRATOR_PLANNING_THREADS")
    # Schedules (scheduler.py): fire the due ticks of the job types served here;
    # look for new schedules at least this often; a claimed tick not recorded
    # within the lease goes to another orchestrator.
    scheduler_enabled: bool = Field(True, validation_alias="ORCHESTRATOR_SCHEDULER")
    scheduler_poll_seconds: float = Field(
        1.0, gt=0, le=60, validation_alias="SCHEDULER_POLL_SECONDS"
    )
    scheduler_lease_seconds: int = Field(
        30, ge=1, le=3600, validation_alias="SCHEDULER_LEASE_SECONDS"
    )
