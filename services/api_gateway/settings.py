"""Gateway settings (environment variables; see README "Configuration")."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class GatewaySettings(CommonSettings):
    http_host: str = Field("0.0.0.0", validation_alias="GATEWAY_HTTP_HOST")
    http_port: int = Field(8080, ge=0, le=65535, validation_alias="GATEWAY_HTTP_PORT")
    grpc_port: int = Field(50051, ge=0, le=65535, validation_alias="GATEWAY_GRPC_PORT")
    state_address: str = Field("localhost:50061", validation_alias="STATE_ADDRESS")
    orchestrator_address: str = Field("localhost:50062", validation_alias="ORCHESTRATOR_ADDRESS")
    worker_address: str = Field("localhost:50063", validation_alias="WORKER_ADDRESS")
    max_body_bytes: int = Field(1_048_576, ge=1024, validation_alias="GATEWAY_MAX_BODY_BYTES")
