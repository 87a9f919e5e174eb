"""TLS and mutual TLS between the services, from certificate files.

Off unless configured: with no GRPC_TLS_* variable set, servers and channels
stay insecure (local stack, tests). Once any is set, the deployment is TLS
throughout: every server needs its certificate and key, and every channel
verifies its peer with GRPC_TLS_CA (or the system roots when it is unset).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc


class TlsSettings(Protocol):
    """The settings fields TLS is read from (shared.settings.CommonSettings has them)."""

    # Read-only: the settings objects are frozen.
    @property
    def grpc_tls_cert(self) -> str | None: ...
    @property
    def grpc_tls_key(self) -> str | None: ...
    @property
    def grpc_tls_ca(self) -> str | None: ...
    @property
    def grpc_tls_client_auth(self) -> bool: ...
    @property
    def grpc_tls_client_cert(self) -> str | None: ...
    @property
    def grpc_tls_client_key(self) -> str | None: ...
    @property
    def grpc_tls_server_name(self) -> str | None: ...


@dataclass(frozen=True)
class TlsConfig:
    """Certificate paths for serving TLS (cert/key) and for verifying and presenting to peers."""

    cert_file: Path | None = None  # this server's certificate chain (PEM)
    key_file: Path | None = None  # and its private key
    ca_file: Path | None = None  # CA that peers' certificates must chain to
    client_auth: bool = False  # servers require client certificates (mTLS)
    client_cert_file: Path | None = None  # what channels present under mTLS
    client_key_file: Path | None = None
    # Expected name in servers' certificates when it differs from the address'
    # host (e.g. addresses by IP with certificates issued for DNS names).
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("GRPC_TLS_CERT and GRPC_TLS_KEY must be set together")
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("GRPC_TLS_CLIENT_CERT and GRPC_TLS_CLIENT_KEY must be set together")
        if self.client_auth and self.ca_file is None:
            raise ValueError("GRPC_TLS_CLIENT_AUTH needs GRPC_TLS_CA to verify client certificates")

    @classmethod
    def from_settings(cls, settings: TlsSettings) -> TlsConfig | None:
        """The service's TLS configuration, or None (insecure) when nothing is set.

        Fails fast at start-up: incomplete settings or missing files raise ValueError.
        """
        paths = {
            "GRPC_TLS_CERT": settings.grpc_tls_cert,
            "GRPC_TLS_KEY": settings.grpc_tls_key,
            "GRPC_TLS_CA": settings.grpc_tls_ca,
            "GRPC_TLS_CLIENT_CERT": settings.grpc_tls_client_cert,
            "GRPC_TLS_CLIENT_KEY": settings.grpc_tls_client_key,
        }
        if not any(paths.values()) and not settings.grpc_tls_client_auth:
            return None
        if not settings.grpc_tls_cert:
            # Every service serves gRPC, so a TLS deployment needs each one's certificate.
            raise ValueError("GRPC_TLS_CERT and GRPC_TLS_KEY are required when TLS is configured")
        for name, value in paths.items():
            if value and not Path(value).is_file():
                raise ValueError(f"{name}: no such file {value}")

        def path(value: str | None) -> Path | None:
            return Path(value) if value else None

        return cls(
            cert_file=path(settings.grpc_tls_cert),
            key_file=path(settings.grpc_tls_key),
            ca_file=path(settings.grpc_tls_ca),
            client_auth=settings.grpc_tls_client_auth,
            client_cert_file=path(settings.grpc_tls_client_cert),
            client_key_file=path(settings.grpc_tls_client_key),
            server_name=settings.grpc_tls_server_name or None,
        )

    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials for a server port (reads the files)."""
        if self.cert_file is None or self.key_file is None:
            raise ValueError("serving TLS needs a certificate and key (GRPC_TLS_CERT/KEY)")
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=_read(self.ca_file) if self.client_auth else None,
            require_client_auth=self.client_auth,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials for a channel to another service (reads the files)."""
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file),
            private_key=_read(self.client_key_file),
            certificate_chain=_read(self.client_cert_file),
        )

    def channel_options(self) -> list[tuple[str, str]]:
        """Extra channel options (the expected server name, when overridden)."""
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None
