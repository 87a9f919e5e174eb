"""Internal gRPC over TLS and mutual TLS, with certificates made here by a throwaway CA."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coremachine.shared.grpc_channel import open_channel
from coremachine.shared.grpc_server import GrpcServer
from coremachine.shared.grpc_tls import TlsConfig
from coremachine.shared.settings import CommonSettings

SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass
class Issued:
    cert: Path
    key: Path


class Authority:
    """A CA that writes PEM files for itself and the certificates it signs."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.name = subject
        self.cert = (
            self._builder(subject, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = directory / f"{name}-ca.pem"
        self.ca_file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def _builder(self, subject: x509.Name, public_key) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(getattr(self, "name", subject))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
        )

    def issue(self, name: str, usage: x509.ObjectIdentifier, dns: list[str]) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        alt_names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        cert = (
            self._builder(subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        issued = Issued(self.directory / f"{name}.pem", self.directory / f"{name}-key.pem")
        issued.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return issued


@dataclass
class Pki:
    ca: Authority
    server: Issued
    client: Issued
    rogue_client: Issued  # a client certificate from a CA the server does not trust
    rogue_ca: Authority


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = Authority(directory, "coremachine")
    rogue = Authority(directory, "rogue")
    return Pki(
        ca=ca,
        server=ca.issue("state", ExtendedKeyUsageOID.SERVER_AUTH, ["localhost", "state"]),
        client=ca.issue("orchestrator", ExtendedKeyUsageOID.CLIENT_AUTH, ["orchestrator"]),
        rogue_client=rogue.issue("intruder", ExtendedKeyUsageOID.CLIENT_AUTH, ["intruder"]),
        rogue_ca=rogue,
    )


@pytest.fixture
async def serve() -> AsyncIterator[Callable]:
    """Starts GrpcServers (health service only) on free ports; returns their addresses."""
    servers: list[GrpcServer] = []

    async def start(tls: TlsConfig | None) -> str:
        server = GrpcServer(0, host="127.0.0.1", tls=tls)
        port = await server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        await server.stop(0)


async def check(address: str, tls: TlsConfig | None) -> int:
    """One health check over a fresh channel; returns the status or raises AioRpcError."""
    channel = open_channel(address, tls=tls)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        return response.status
    finally:
        await channel.close()


async def refused(address: str, tls: TlsConfig | None) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await check(address, tls)
    return failed.value.code()


def server_tls(pki: Pki, client_auth: bool = False) -> TlsConfig:
    return TlsConfig(
        cert_file=pki.server.cert,
        key_file=pki.server.key,
        ca_file=pki.ca.ca_file,
        client_auth=client_auth,
    )


async def test_plaintext_stays_the_default(serve) -> None:
    address = await serve(None)
    assert await check(address, None) == SERVING


async def test_tls_works_with_the_ca_and_fails_without_it(serve, pki: Pki) -> None:
    address = await serve(server_tls(pki))

    assert await check(address, TlsConfig(ca_file=pki.ca.ca_file)) == SERVING
    # Verified by name too: the certificate is issued for "state" and "localhost".
    named = TlsConfig(ca_file=pki.ca.ca_file, server_name="state")
    assert await check(address, named) == SERVING

    # No CA: the system roots do not know our CA; a different CA does not either.
    assert await refused(address, TlsConfig()) == grpc.StatusCode.UNAVAILABLE
    assert (
        await refused(address, TlsConfig(ca_file=pki.rogue_ca.ca_file))
        == grpc.StatusCode.UNAVAILABLE
    )
    # A plaintext client cannot talk to a TLS port.
    assert await refused(address, None) == grpc.StatusCode.UNAVAILABLE
    # A name the certificate does not carry is rejected.
    wrong_name = TlsConfig(ca_file=pki.ca.ca_file, server_name="worker")
    assert await refused(address, wrong_name) == grpc.StatusCode.UNAVAILABLE


async def test_mtls_requires_a_client_certificate_from_the_ca(serve, pki: Pki) -> None:
    address = await serve(server_tls(pki, client_auth=True))

    with_cert = TlsConfig(
        ca_file=pki.ca.ca_file,
        client_cert_file=pki.client.cert,
        client_key_file=pki.client.key,
    )
    assert await check(address, with_cert) == SERVING

    assert await refused(address, TlsConfig(ca_file=pki.ca.ca_file)) == grpc.StatusCode.UNAVAILABLE
    rogue = TlsConfig(
        ca_file=pki.ca.ca_file,
        client_cert_file=pki.rogue_client.cert,
        client_key_file=pki.rogue_client.key,
    )
    assert await refused(address, rogue) == grpc.StatusCode.UNAVAILABLE


def test_config_from_settings(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CERT", "KEY", "CA", "CLIENT_AUTH", "CLIENT_CERT", "CLIENT_KEY", "SERVER_NAME"):
        monkeypatch.delenv(f"GRPC_TLS_{name}", raising=False)
    assert TlsConfig.from_settings(CommonSettings()) is None

    monkeypatch.setenv("GRPC_TLS_CERT", str(pki.server.cert))
    monkeypatch.setenv("GRPC_TLS_KEY", str(pki.server.key))
    monkeypatch.setenv("GRPC_TLS_CA", str(pki.ca.ca_file))
    monkeypatch.setenv("GRPC_TLS_CLIENT_AUTH", "true")
    monkeypatch.setenv("GRPC_TLS_CLIENT_CERT", str(pki.client.cert))
    monkeypatch.setenv("GRPC_TLS_CLIENT_KEY", str(pki.client.key))
    config = TlsConfig.from_settings(CommonSettings())
    assert config == TlsConfig(
        cert_file=pki.server.cert,
        key_file=pki.server.key,
        ca_file=pki.ca.ca_file,
        client_auth=True,
        client_cert_file=pki.client.cert,
        client_key_file=pki.client.key,
    )

    # Fail fast on what cannot work: a half-configured pair, mTLS without a CA, a missing file.
    monkeypatch.delenv("GRPC_TLS_CLIENT_KEY")
    with pytest.raises(ValueError, match="CLIENT_CERT and GRPC_TLS_CLIENT_KEY"):
        TlsConfig.from_settings(CommonSettings())
    monkeypatch.setenv("GRPC_TLS_CLIENT_KEY", str(pki.client.key))
    monkeypatch.delenv("GRPC_TLS_CA")
    with pytest.raises(ValueError, match="needs GRPC_TLS_CA"):
        TlsConfig.from_settings(CommonSettings())
    monkeypatch.setenv("GRPC_TLS_CA", "/nonexistent/ca.pem")
    with pytest.raises(ValueError, match="no such file"):
        TlsConfig.from_settings(CommonSettings())
    monkeypatch.delenv("GRPC_TLS_CERT")
    monkeypatch.setenv("GRPC_TLS_CA", str(pki.ca.ca_file))
    with pytest.raises(ValueError, match="required when TLS is configured"):
        TlsConfig.from_settings(CommonSettings())
