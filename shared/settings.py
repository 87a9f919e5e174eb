"""Settings every service shares, read from environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Logging and broker settings (documented in README.md, "Configuration")."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    log_format: Literal["json", "text"] = Field("json", validation_alias="LOG_FORMAT")

    broker: Literal["postgres", "servicebus"] = Field("postgres", validation_alias="BROKER")
    broker_database_url: str | None = Field(None, validation_alias="BROKER_DATABASE_URL")
    servicebus_connection_string: str | None = Field(
        None, validation_alias="SERVICEBUS_CONNECTION_STRING"
    )
    servicebus_namespace: str | None = Field(None, validation_alias="SERVICEBUS_NAMESPACE")
    jobs_queue: str = Field("jobs", validation_alias="JOBS_QUEUE")
    tasks_queue: str = Field("tasks", validation_alias="TASKS_QUEUE")
    # Peek-lock duration and max deliveries of the PostgreSQL queue (on Service
    # Bus these are properties of the queue itself).
    broker_lock_seconds: float = Field(30.0, gt=0, validation_alias="BROKER_LOCK_SECONDS")
    broker_max_delivery_count: int = Field(10, ge=1, validation_alias="BROKER_MAX_DELIVERY_COUNT")
