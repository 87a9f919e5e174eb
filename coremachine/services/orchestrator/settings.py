"""Orchestrator settings (environment variables; see README "Configuration")."""

from __future__ import annotations

from pydantic import Field

from coremachine.shared.settings import CommonSettings


class OrchestratorSettings(CommonSettings):
    grpc_port: int = Field(50062, ge=0, le=65535, validation_alias="ORCHESTRATOR_GRPC_PORT")
    state_address: str = Field("localhost:50061", validation_alias="STATE_ADDRESS")
    hello_world_max_n: int = Field(100_000, ge=1, validation_alias="HELLO_WORLD_MAX_N")
    task_max_retries: int = Field(3, ge=0, le=20, validation_alias="TASK_MAX_RETRIES")
    retry_base_ms: int = Field(1000, ge=1, validation_alias="TASK_RETRY_BASE_MS")
    retry_max_ms: int = Field(60_000, ge=1, validation_alias="TASK_RETRY_MAX_MS")
    create_chunk_size: int = Field(2000, ge=1, validation_alias="STAGE_CREATE_CHUNK_SIZE")
    consumer_batch: int = Field(16, ge=1, validation_alias="ORCHESTRATOR_BATCH_SIZE")
