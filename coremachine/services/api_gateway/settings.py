"""Gateway settings (environment variables; see README "Configuration")."""

from __future__ import annotations

from pydantic import Field

from coremachine.shared.settings import CommonSettings


class GatewaySettings(CommonSettings):
    http_host: str = Field("0.0.0.0", validation_alias="GATEWAY_HTTP_HOST")
    http_port: int = Field(8080, ge=0, le=65535, validation_alias="GATEWAY_HTTP_PORT")
    grpc_port: int = Field(50051, ge=0, le=65535, validation_alias="GATEWAY_GRPC_PORT")
    metrics_port: int = Field(9460, ge=0, le=65535, validation_alias="GATEWAY_METRICS_PORT")
    state_address: str = Field("localhost:50061", validation_alias="STATE_ADDRESS")
    orchestrator_address: str = Field("localhost:50062", validation_alias="ORCHESTRATOR_ADDRESS")
    worker_address: str = Field("localhost:50063", validation_alias="WORKER_ADDRESS")
    max_body_bytes: int = Field(1_048_576, ge=1024, validation_alias="GATEWAY_MAX_BODY_BYTES")
    # How long an idle HTTP/1.1 connection is kept open. It must outlast the
    # idle timeouts of the clients and proxies in front (httpx and requests keep
    # connections 5 s, most load balancers 60 s): a server that closes first
    # races the client's next request on that connection, which then fails
    # with a reset instead of an answer (uvicorn's default is 5 s).
    keep_alive_seconds: int = Field(
        75, ge=1, le=3600, validation_alias="GATEWAY_HTTP_KEEP_ALIVE_SECONDS"
    )

    # Auth: API keys (hashed) come from the secrets port as the secret `api-keys`
    # (SECRETS_PROVIDER=env reads it from API_KEYS). Turning auth off is only
    # for local development and is logged as a warning at start-up.
    auth_disabled: bool = Field(False, validation_alias="GATEWAY_AUTH_DISABLED")
    api_keys_secret: str = Field("api-keys", validation_alias="GATEWAY_API_KEYS_SECRET")
    # A revoked key stops working within this many seconds.
    api_keys_ttl_seconds: float = Field(60.0, gt=0, validation_alias="GATEWAY_API_KEYS_TTL_SECONDS")

    # Input limits: parameters are stored and shipped between services, so
    # very large or deeply nested ones are refused at the edge.
    max_parameter_bytes: int = Field(
        65_536, ge=1024, validation_alias="GATEWAY_MAX_PARAMETER_BYTES"
    )
    max_parameter_depth: int = Field(20, ge=1, validation_alias="GATEWAY_MAX_PARAMETER_DEPTH")
    max_list_limit: int = Field(1000, ge=1, le=1000, validation_alias="GATEWAY_MAX_LIST_LIMIT")
    # How often an event stream asks the state service for new events while idle.
    # Long-poll window of one event request to the state service (it answers
    # at once when the job gets an event); also the keepalive cadence of SSE.
    events_poll_seconds: float = Field(
        10.0, gt=0, le=30, validation_alias="GATEWAY_EVENTS_POLL_SECONDS"
    )
