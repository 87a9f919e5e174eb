"""Worker settings (environment variables; see README "Configuration")."""

from __future__ import annotations

import os
import socket

from pydantic import Field

from coremachine.shared.settings import CommonSettings


class WorkerSettings(CommonSettings):
    grpc_port: int = Field(50063, ge=0, le=65535, validation_alias="WORKER_GRPC_PORT")
    state_address: str = Field("localhost:50061", validation_alias="STATE_ADDRESS")
    concurrency: int = Field(256, ge=1, validation_alias="WORKER_CONCURRENCY")
    receive_batch: int = Field(128, ge=1, validation_alias="WORKER_RECEIVE_BATCH")
    completion_batch: int = Field(256, ge=1, validation_alias="WORKER_COMPLETION_BATCH")
    lease_seconds: int = Field(30, ge=2, validation_alias="TASK_LEASE_SECONDS")
    shutdown_grace_seconds: float = Field(
        10.0, ge=0, validation_alias="WORKER_SHUTDOWN_GRACE_SECONDS"
    )
    worker_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}",
        validation_alias="WORKER_ID",
    )
