"""Client channels between services, configured the same way everywhere."""

from __future__ import annotations

import grpc

from shared.grpc_server import CHANNEL_OPTIONS

_CLIENT_OPTIONS = [
    *CHANNEL_OPTIONS,
    # Detect a dead peer (e.g. a killed state service) quickly, and reconnect.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


def open_channel(address: str) -> grpc.aio.Channel:
    """An insecure channel to another CoreMachine service."""
    return grpc.aio.insecure_channel(address, options=_CLIENT_OPTIONS)
