"""Client channels between services, configured the same way everywhere.

Every channel carries a gRPC service config (the library's own mechanism,
not a retry loop per call site):

- every call has a deadline, even when its caller sets none: a call to a
  service that hangs fails in bounded time instead of holding a consumer;
- UNAVAILABLE is retried with exponential backoff (a state replica that
  restarts, PostgreSQL restarting behind it), a few times, with retry
  throttling so that a long outage does not multiply the load: after a run
  of failures the calls fail fast and the callers' own policies (abandon
  the message, answer 503) take over until calls succeed again;
- `round_robin` spreads calls over every address the target resolves to,
  so one address can name several replicas:
  `ipv4:127.0.0.1:50061,127.0.0.1:50071`, or a DNS name with several
  records (a Kubernetes headless service).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc

from coremachine.shared.grpc_server import CHANNEL_OPTIONS, CLIENT_KEEPALIVE_MS
from coremachine.shared.grpc_tls import TlsConfig

# Deadlines (seconds) of calls that set none themselves. A call that sets a
# shorter one keeps it: gRPC applies the earlier of the two.
DEFAULT_DEADLINE_SECONDS = 30.0
_LONG_DEADLINES = {
    # Long polls wait up to 30 s for an event before answering.
    ("coremachine.state.v1.StateService", "ListEvents"): 60.0,
    # Results of a 100,000-task stage stream for a while.
    ("coremachine.state.v1.StateService", "GetStageResults"): 600.0,
    ("coremachine.state.v1.StateService", "RedeploySchema"): 300.0,
}

RETRY_POLICY: dict[str, Any] = {
    "maxAttempts": 5,
    "initialBackoff": "0.1s",
    "maxBackoff": "2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}


def service_config() -> dict[str, Any]:
    """The service config of internal channels (see the module docstring)."""
    method_configs: list[dict[str, Any]] = [
        {
            "name": [{"service": service, "method": method}],
            "timeout": f"{seconds:.0f}s",
            "retryPolicy": RETRY_POLICY,
        }
        for (service, method), seconds in _LONG_DEADLINES.items()
    ]
    method_configs.append(
        {
            "name": [{}],  # every other method of every service
            "timeout": f"{DEFAULT_DEADLINE_SECONDS:.0f}s",
            "retryPolicy": RETRY_POLICY,
        }
    )
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": method_configs,
        # Each failed call takes a token, each success gives 0.1 back; below
        # half the tokens, no call is retried.
        "retryThrottling": {"maxTokens": 20, "tokenRatio": 0.1},
    }


_CLIENT_OPTIONS = [
    *CHANNEL_OPTIONS,
    # Detect a dead peer (e.g. a killed state service) quickly, and reconnect.
    ("grpc.keepalive_time_ms", CLIENT_KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(service_config())),
]


def open_channel(
    address: str,
    *,
    tls: TlsConfig | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """A channel to another CoreMachine service: TLS (mTLS with a client cert) when `tls` is set.

    `address` is a gRPC target: `host:port`, `dns:///name:port`, or a list
    of replicas such as `ipv4:10.0.0.1:50061,10.0.0.2:50061`. Interceptors:
    trace context propagation (shared/telemetry.py), when tracing is on.
    """
    chain = list(interceptors) or None
    if tls is None:
        return grpc.aio.insecure_channel(address, options=_CLIENT_OPTIONS, interceptors=chain)
    return grpc.aio.secure_channel(
        address,
        tls.channel_credentials(),
        options=[*_CLIENT_OPTIONS, *tls.channel_options()],
        interceptors=chain,
    )
