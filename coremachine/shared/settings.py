"""Settings every service shares, read from environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from coremachine.shared.blobstore import validate_container_name
from coremachine.shared.blobstores import DEFAULT_LOCAL_ROOT
from coremachine.shared.claim_check import DEFAULT_CONTAINER, DEFAULT_THRESHOLD_BYTES


class CommonSettings(BaseSettings):
    """Logging, broker and blob-store settings (documented in README.md, "Configuration")."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    log_level: str = Field("INFO", validation_alias="LOG_LEVEL")
    # Where secrets (database password, API keys) come from: shared/secrets_providers.
    secrets_provider: Literal["env", "file", "keyvault"] = Field(
        "env", validation_alias="SECRETS_PROVIDER"
    )
    secrets_dir: str | None = Field(None, validation_alias="SECRETS_DIR")
    key_vault_url: str | None = Field(None, validation_alias="KEY_VAULT_URL")
    log_format: Literal["json", "text"] = Field("json", validation_alias="LOG_FORMAT")
    # Where /metrics (Prometheus) listens; each service has its own port setting.
    metrics_host: str = Field("0.0.0.0", validation_alias="METRICS_HOST")

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
    # PostgreSQL queue: how many seconds earlier a message counts per priority
    # level above normal (docs/flow-control.md). Service Bus: receive from the
    # priority band queues (`tasks-high`, `tasks`, `tasks-low`), which must exist.
    broker_priority_aging_seconds: float = Field(
        10.0, ge=0, validation_alias="BROKER_PRIORITY_AGING_SECONDS"
    )
    servicebus_priority_bands: bool = Field(False, validation_alias="SERVICEBUS_PRIORITY_BANDS")

    # Internal gRPC TLS (see shared/grpc_tls.py; all unset = plaintext). Paths to PEM files.
    grpc_tls_cert: str | None = Field(None, validation_alias="GRPC_TLS_CERT")
    grpc_tls_key: str | None = Field(None, validation_alias="GRPC_TLS_KEY")
    grpc_tls_ca: str | None = Field(None, validation_alias="GRPC_TLS_CA")
    grpc_tls_client_auth: bool = Field(False, validation_alias="GRPC_TLS_CLIENT_AUTH")
    grpc_tls_client_cert: str | None = Field(None, validation_alias="GRPC_TLS_CLIENT_CERT")
    grpc_tls_client_key: str | None = Field(None, validation_alias="GRPC_TLS_CLIENT_KEY")
    grpc_tls_server_name: str | None = Field(None, validation_alias="GRPC_TLS_SERVER_NAME")
    # Calls in flight beyond this are refused at once (RESOURCE_EXHAUSTED),
    # not queued. Long polls of event streams count too: keep it well above
    # the number of open streams.
    grpc_max_concurrent_rpcs: int = Field(1000, ge=1, validation_alias="GRPC_MAX_CONCURRENT_RPCS")
    # How often the health monitor probes this service's dependencies
    # (shared/health_monitor.py); gRPC health follows the result.
    health_probe_seconds: float = Field(2.0, gt=0, validation_alias="HEALTH_PROBE_SECONDS")

    # Blob store (shared/blobstores) and the claim check of large task payloads
    # (shared/claim_check.py); used by the orchestrator and the worker.
    blob_store: Literal["local", "azure"] = Field("local", validation_alias="BLOB_STORE")
    blob_local_root: str = Field(DEFAULT_LOCAL_ROOT, validation_alias="BLOB_LOCAL_ROOT")
    azure_storage_connection_string: str | None = Field(
        None, validation_alias="AZURE_STORAGE_CONNECTION_STRING"
    )
    azure_storage_account_url: str | None = Field(
        None, validation_alias="AZURE_STORAGE_ACCOUNT_URL"
    )
    claim_check_container: str = Field(DEFAULT_CONTAINER, validation_alias="CLAIM_CHECK_CONTAINER")
    # 192 KiB by default: a Service Bus Standard message is at most 256 KB with its headers.
    claim_check_threshold_bytes: int = Field(
        DEFAULT_THRESHOLD_BYTES, ge=1, validation_alias="CLAIM_CHECK_THRESHOLD_BYTES"
    )

    @field_validator("claim_check_container")
    @classmethod
    def _container_name(cls, value: str) -> str:
        # Checked at start-up, not at the first large payload.
        return validate_container_name(value)
