"""How the SDK connects: address, TLS credentials and the API key metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

DEFAULT_ADDRESS = "localhost:50051"

# Results of big jobs can exceed gRPC's 4 MB default; the services allow 64 MB.
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    # Notice a dead gateway during a long watch, and reconnect quickly.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]


@dataclass(frozen=True)
class TlsOptions:
    """TLS to the gateway: a CA to trust (default: system roots), a client cert for mTLS."""

    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    # Expected server name when it differs from the address' host (tests, tunnels).
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        """The gRPC channel credentials these options describe (reads the files)."""
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file),
            private_key=_read(self.key_file),
            certificate_chain=_read(self.cert_file),
        )


def _read(path: str | Path | None) -> bytes | None:
    return Path(path).read_bytes() if path is not None else None


def _tls_options(tls: bool | TlsOptions) -> TlsOptions | None:
    if isinstance(tls, TlsOptions):
        return tls
    return TlsOptions() if tls else None


def open_aio_channel(address: str, tls: bool | TlsOptions) -> grpc.aio.Channel:
    """A grpc.aio channel to the gateway, secure when `tls` is set."""
    options = _tls_options(tls)
    if options is None:
        return grpc.aio.insecure_channel(address, options=_OPTIONS)
    extra = [("grpc.ssl_target_name_override", options.server_name)] if options.server_name else []
    return grpc.aio.secure_channel(address, options.credentials(), options=[*_OPTIONS, *extra])


def auth_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata carrying the API key (none without a key)."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()
