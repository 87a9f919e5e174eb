"""Worker settings (environment variables; see README "Configuration")."""

from __future__ import annotations

import os
import socket

from pydantic import Field, field_validator

from coremachine.shared.settings import CommonSettings


class WorkerSettings(CommonSettings):
    grpc_port: int = Field(50063, ge=0, le=65535, validation_alias="WORKER_GRPC_PORT")
    metrics_port: int = Field(9463, ge=0, le=65535, validation_alias="WORKER_METRICS_PORT")
    state_address: str = Field("localhost:50061", validation_alias="STATE_ADDRESS")
    # The apps whose task handlers this worker runs ("package.module:app",
    # comma-separated); unset: every app in the `coremachine.apps` entry points.
    apps: str | None = Field(None, validation_alias="COREMACHINE_APPS")
    # The queues this worker consumes (its pool), comma-separated; unset: TASKS_QUEUE.
    queues: str | None = Field(None, validation_alias="WORKER_QUEUES")
    concurrency: int = Field(256, ge=1, validation_alias="WORKER_CONCURRENCY")
    # Threads for sync handlers (async ones run on the event loop).
    threads: int = Field(32, ge=1, le=1024, validation_alias="WORKER_THREADS")
    receive_batch: int = Field(128, ge=1, validation_alias="WORKER_RECEIVE_BATCH")
    completion_batch: int = Field(256, ge=1, validation_alias="WORKER_COMPLETION_BATCH")
    lease_seconds: int = Field(30, ge=2, validation_alias="TASK_LEASE_SECONDS")
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, validation_alias="WORKER_SHUTDOWN_GRACE_SECONDS"
    )
    # How often the worker tells the state service it is alive (and its load).
    heartbeat_seconds: float = Field(5.0, gt=0, le=300, validation_alias="WORKER_HEARTBEAT_SECONDS")
    # A task type no loaded app defines is handed back this many times (for a
    # worker that does know it) before it is dead-lettered.
    unknown_task_deliveries: int = Field(5, ge=1, validation_alias="WORKER_UNKNOWN_TASK_DELIVERIES")
    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}",
        validation_alias="WORKER_ID",
    )

    @field_validator("queues")
    @classmethod
    def _queues(cls, value: str | None) -> str | None:
        if value is not None and not [q for q in value.split(",") if q.strip()]:
            raise ValueError("WORKER_QUEUES names no queue")
        return value

    def queue_names(self) -> list[str]:
        if not self.queues:
            return [self.tasks_queue]
        return list(dict.fromkeys(q.strip() for q in self.queues.split(",") if q.strip()))
