"""Client channels between services, configured the same way everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from coremachine.shared.grpc_server import CHANNEL_OPTIONS
from coremachine.shared.grpc_tls import TlsConfig

_CLIENT_OPTIONS = [
    *CHANNEL_OPTIONS,
    # Detect a dead peer (e.g. a killed state service) quickly, and reconnect.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


def open_channel(
    address: str,
    *,
    tls: TlsConfig | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """A channel to another CoreMachine service: TLS (mTLS with a client cert) when `tls` is set.

    Interceptors: trace context propagation (shared/telemetry.py), when tracing is on.
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
