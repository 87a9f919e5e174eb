"""State service settings (environment variables; see README "Configuration")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from coremachine.shared.settings import CommonSettings


class StateSettings(CommonSettings):
    database_url: str = Field(validation_alias="DATABASE_URL")
    # password: from the URL, else the secret `database-password`; entra: an
    # Entra ID token (Azure Database for PostgreSQL with managed identity).
    database_auth: Literal["password", "entra"] = Field(
        "password", validation_alias="DATABASE_AUTH"
    )
    secrets_cache_seconds: float = Field(300.0, gt=0, validation_alias="SECRETS_CACHE_SECONDS")
    grpc_port: int = Field(50061, ge=0, le=65535, validation_alias="STATE_GRPC_PORT")
    metrics_port: int = Field(9461, ge=0, le=65535, validation_alias="STATE_METRICS_PORT")
    # How often the queue gauges (depth, oldest message, dead letters) are read.
    metrics_queue_seconds: float = Field(15.0, gt=0, validation_alias="STATE_METRICS_QUEUE_SECONDS")
    pool_max_size: int = Field(10, ge=2, validation_alias="STATE_POOL_MAX_SIZE")
    # Backpressure: a request waits at most this long for a pooled
    # connection (then UNAVAILABLE), and at most this many may wait (the
    # next are refused at once with RESOURCE_EXHAUSTED).
    pool_timeout_seconds: float = Field(5.0, gt=0, validation_alias="STATE_POOL_TIMEOUT_SECONDS")
    pool_max_waiting: int = Field(100, ge=1, validation_alias="STATE_POOL_MAX_WAITING")
    migrate_on_start: bool = Field(True, validation_alias="STATE_MIGRATE_ON_START")
    relay_batch_size: int = Field(500, ge=1, validation_alias="OUTBOX_RELAY_BATCH_SIZE")
    janitor_interval_seconds: float = Field(5.0, gt=0, validation_alias="JANITOR_INTERVAL_SECONDS")
    job_deadline_seconds: float = Field(86400.0, gt=0, validation_alias="JOB_DEADLINE_SECONDS")
    stage_stall_seconds: float = Field(30.0, gt=0, validation_alias="STAGE_STALL_SECONDS")
    # A queued task of a stage quiet for this long gets its message again if
    # the broker lost it (see janitor.py).
    task_resend_seconds: float = Field(60.0, gt=0, validation_alias="TASK_RESEND_SECONDS")
    allow_schema_redeploy: bool = Field(False, validation_alias="STATE_ALLOW_SCHEMA_REDEPLOY")
    # With the PostgreSQL queue in the state database, enqueue messages in the
    # state transaction itself instead of through the outbox table and relay.
    direct_enqueue: bool = Field(True, validation_alias="OUTBOX_DIRECT_ENQUEUE")

    def uses_direct_enqueue(self) -> bool:
        return (
            self.direct_enqueue
            and self.broker == "postgres"
            and self.broker_database_url in (None, self.database_url)
        )
