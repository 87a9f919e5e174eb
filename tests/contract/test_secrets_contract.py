"""One contract suite for every secrets provider, plus CachedSecrets' TTL behaviour.

env and file always run; Key Vault runs when KEY_VAULT_URL is set and
DefaultAzureCredential can authenticate (it needs secrets get/set/delete).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from coremachine.shared.secrets import CachedSecrets, SecretsProvider
from coremachine.shared.secrets_providers import open_secrets_provider
from coremachine.shared.secrets_providers.env import EnvSecrets, env_var_name
from coremachine.shared.secrets_providers.file import FileSecrets

KEY_VAULT_SKIP = "set KEY_VAULT_URL and Azure credentials to run the Key Vault secrets tests"

Seed = Callable[[str, str], Awaitable[None]]


@dataclass
class Subject:
    """A provider under test and a way to give it a secret."""

    provider: SecretsProvider
    seed: Seed


@pytest.fixture(params=["env", "file", pytest.param("keyvault", marks=pytest.mark.azure)])
async def subject(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Subject]:
    if request.param == "env":

        async def seed_env(name: str, value: str) -> None:
            monkeypatch.setenv(env_var_name(name, "CMTEST_"), value)

        provider: SecretsProvider = EnvSecrets(prefix="CMTEST_")
        yield Subject(provider, seed_env)
        await provider.close()
    elif request.param == "file":

        async def seed_file(name: str, value: str) -> None:
            # As `kubectl create secret --from-file` of a file written by echo.
            (tmp_path / name).write_text(value + "\n", encoding="utf-8")

        provider = FileSecrets(tmp_path)
        yield Subject(provider, seed_file)
        await provider.close()
    else:
        async with _key_vault_subject() as key_vault:
            yield key_vault


@contextlib.asynccontextmanager
async def _key_vault_subject() -> AsyncIterator[Subject]:
    vault_url = os.environ.get("KEY_VAULT_URL")
    if not vault_url:
        pytest.skip(KEY_VAULT_SKIP)
    from azure.core.exceptions import HttpResponseError
    from azure.identity.aio import DefaultAzureCredential
    from azure.keyvault.secrets.aio import SecretClient

    from coremachine.shared.secrets_providers.keyvault import KeyVaultSecrets

    credential = DefaultAzureCredential()
    admin = SecretClient(vault_url=vault_url, credential=credential)
    seeded: list[str] = []

    async def seed_vault(name: str, value: str) -> None:
        await admin.set_secret(name, value)
        seeded.append(name)

    provider = KeyVaultSecrets(vault_url, credential=credential)
    try:
        yield Subject(provider, seed_vault)
    finally:
        for name in seeded:
            await admin.delete_secret(name)
            # Purging needs its own permission; a soft-deleted secret expires anyway.
            with contextlib.suppress(HttpResponseError):
                await admin.purge_deleted_secret(name)
        await provider.close()
        await admin.close()
        await credential.close()


def _unique(name: str) -> str:
    # Unique per test so runs against one shared vault cannot see each other.
    return f"{name}-{uuid.uuid4().hex[:10]}"


# -- the contract -------------------------------------------------------------


async def test_returns_a_seeded_secret(subject: Subject) -> None:
    name = _unique("database-password")
    await subject.seed(name, "p@ss w0rd;=with spaces")
    assert await subject.provider.get(name) == "p@ss w0rd;=with spaces"


async def test_keeps_inner_newlines(subject: Subject) -> None:
    name = _unique("pem")
    value = "-----BEGIN KEY-----\nabc\n-----END KEY-----"
    await subject.seed(name, value)
    assert await subject.provider.get(name) == value


async def test_missing_secret_is_none(subject: Subject) -> None:
    assert await subject.provider.get(_unique("never-set")) is None


async def test_secrets_do_not_leak_into_each_other(subject: Subject) -> None:
    first, second = _unique("first"), _unique("second")
    await subject.seed(first, "one")
    await subject.seed(second, "two")
    assert await subject.provider.get(first) == "one"
    assert await subject.provider.get(second) == "two"


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "a/b", "with_underscore", "with.dot", "", "x" * 128, "é"]
)
async def test_names_outside_key_vault_rules_are_rejected(subject: Subject, name: str) -> None:
    with pytest.raises(ValueError, match="invalid secret name"):
        await subject.provider.get(name)


# -- environment specifics ---------------------------------------------------------


async def test_env_maps_names_to_upper_case_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "from-env")
    monkeypatch.setenv("COREMACHINE_DB_PASSWORD", "prefixed")
    assert env_var_name("db-password") == "DB_PASSWORD"
    assert await EnvSecrets().get("db-password") == "from-env"
    assert await EnvSecrets(prefix="COREMACHINE_").get("db-password") == "prefixed"


async def test_env_treats_an_empty_variable_as_unset() -> None:
    assert await EnvSecrets(environ={"API_KEY": ""}).get("api-key") is None
    assert await EnvSecrets(environ={"API_KEY": "k"}).get("api-key") == "k"


async def test_env_sees_changes_after_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = EnvSecrets(prefix="CMTEST_")
    monkeypatch.setenv("CMTEST_ROTATED", "old")
    assert await provider.get("rotated") == "old"
    monkeypatch.setenv("CMTEST_ROTATED", "new")
    assert await provider.get("rotated") == "new"


# -- file specifics ----------------------------------------------------------------


async def test_file_strips_one_trailing_newline(tmp_path: Path) -> None:
    provider = FileSecrets(tmp_path)
    (tmp_path / "unix").write_bytes(b"s3cret\n")
    (tmp_path / "windows").write_bytes(b"s3cret\r\n")
    (tmp_path / "bare").write_bytes(b"s3cret")
    (tmp_path / "two").write_bytes(b"s3cret\n\n")
    assert await provider.get("unix") == "s3cret"
    assert await provider.get("windows") == "s3cret"
    assert await provider.get("bare") == "s3cret"
    assert await provider.get("two") == "s3cret\n"


async def test_file_reads_a_kubernetes_secret_mount(tmp_path: Path) -> None:
    # Kubernetes mounts each key as a symlink into a timestamped directory and
    # swaps the `..data` link on rotation.
    (tmp_path / "..2024_01_01").mkdir()
    (tmp_path / "..2024_01_01" / "database-password").write_text("v1")
    (tmp_path / "..data").symlink_to("..2024_01_01")
    (tmp_path / "database-password").symlink_to("..data/database-password")
    provider = FileSecrets(tmp_path)
    assert await provider.get("database-password") == "v1"
    (tmp_path / "..2024_02_01").mkdir()
    (tmp_path / "..2024_02_01" / "database-password").write_text("v2")
    (tmp_path / "..data.tmp").symlink_to("..2024_02_01")
    os.replace(tmp_path / "..data.tmp", tmp_path / "..data")
    assert await provider.get("database-password") == "v2"


async def test_file_missing_directory_or_directory_entry_is_none(tmp_path: Path) -> None:
    (tmp_path / "subdir").mkdir()
    assert await FileSecrets(tmp_path).get("subdir") is None
    assert await FileSecrets(tmp_path / "absent").get("anything") is None


# -- choosing a provider ---------------------------------------------------------


async def test_open_secrets_provider(tmp_path: Path) -> None:
    assert isinstance(open_secrets_provider("env"), EnvSecrets)
    assert isinstance(open_secrets_provider("file", secrets_dir=str(tmp_path)), FileSecrets)
    with pytest.raises(ValueError, match="SECRETS_DIR"):
        open_secrets_provider("file")
    with pytest.raises(ValueError, match="KEY_VAULT_URL"):
        open_secrets_provider("keyvault")
    with pytest.raises(ValueError, match="unknown SECRETS_PROVIDER"):
        open_secrets_provider("vault")


# -- CachedSecrets ---------------------------------------------------------------


class CountingSecrets(SecretsProvider):
    """A fake provider that counts fetches and can hold them until released."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.calls: list[str] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.fail_next = False
        self.closed = False

    async def get(self, name: str) -> str | None:
        self.calls.append(name)
        self.started.set()
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("vault unreachable")
        return self.values.get(name)

    async def close(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_cached_secrets_serve_from_cache_until_the_ttl_expires() -> None:
    inner, clock = CountingSecrets({"db-password": "v1"}), FakeClock()
    cached = CachedSecrets(inner, ttl_seconds=60, clock=clock)
    assert await cached.get("db-password") == "v1"
    inner.values["db-password"] = "v2"
    clock.now += 59.9
    assert await cached.get("db-password") == "v1"
    assert inner.calls == ["db-password"]
    clock.now += 0.1
    assert await cached.get("db-password") == "v2"
    assert inner.calls == ["db-password", "db-password"]


async def test_cached_secrets_cache_each_name_separately_and_absences_too() -> None:
    inner, clock = CountingSecrets({"a": "1"}), FakeClock()
    cached = CachedSecrets(inner, ttl_seconds=10, clock=clock)
    assert await cached.get("a") == "1"
    assert await cached.get("missing") is None
    assert await cached.get("missing") is None
    assert await cached.get("a") == "1"
    assert inner.calls == ["a", "missing"]


async def test_cached_secrets_concurrent_callers_share_one_fetch() -> None:
    inner = CountingSecrets({"db-password": "shared"})
    inner.release.clear()
    cached = CachedSecrets(inner, ttl_seconds=60)
    callers = [asyncio.create_task(cached.get("db-password")) for _ in range(20)]
    # The fetch task is scheduled after the callers, so when it starts every
    # caller has already looked for the secret.
    await inner.started.wait()
    assert not any(task.done() for task in callers)
    inner.release.set()
    assert await asyncio.gather(*callers) == ["shared"] * 20
    assert inner.calls == ["db-password"]


async def test_cached_secrets_do_not_cache_errors() -> None:
    inner = CountingSecrets({"token": "t"})
    inner.fail_next = True
    cached = CachedSecrets(inner, ttl_seconds=60)
    with pytest.raises(ConnectionError):
        await cached.get("token")
    assert await cached.get("token") == "t"
    assert len(inner.calls) == 2


async def test_cached_secrets_one_cancelled_caller_does_not_cancel_the_fetch() -> None:
    inner = CountingSecrets({"token": "t"})
    inner.release.clear()
    cached = CachedSecrets(inner, ttl_seconds=60)
    impatient = asyncio.create_task(cached.get("token"))
    patient = asyncio.create_task(cached.get("token"))
    await inner.started.wait()
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    inner.release.set()
    assert await patient == "t"
    assert inner.calls == ["token"]


async def test_cached_secrets_invalidate_and_close() -> None:
    inner = CountingSecrets({"token": "t1"})
    cached = CachedSecrets(inner, ttl_seconds=3600)
    assert await cached.get("token") == "t1"
    inner.values["token"] = "t2"
    cached.invalidate("token")
    assert await cached.get("token") == "t2"
    inner.values["token"] = "t3"
    cached.invalidate()
    assert await cached.get("token") == "t3"
    assert len(inner.calls) == 3
    await cached.close()
    assert inner.closed


# -- Key Vault adapter, offline -----------------------------------------------------


async def test_key_vault_maps_a_missing_secret_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # The live contract above needs a vault; this pins the one translation the
    # adapter makes, with the SDK client's answer stubbed.
    from azure.core.exceptions import ResourceNotFoundError
    from azure.keyvault.secrets import KeyVaultSecret, SecretProperties

    from coremachine.shared.secrets_providers.keyvault import KeyVaultSecrets

    class NoCredential:
        async def get_token(self, *scopes: str, **kwargs: object) -> object:
            raise AssertionError("no network in this test")

        async def close(self) -> None:
            pass

    provider = KeyVaultSecrets("https://example.vault.azure.net", credential=NoCredential())  # type: ignore[arg-type]
    stored = {"database-password": "pw"}

    async def fake_get_secret(name: str, version: str | None = None) -> KeyVaultSecret:
        if name not in stored:
            raise ResourceNotFoundError(f"A secret with (name/id) {name} was not found")
        return KeyVaultSecret(properties=SecretProperties(), value=stored[name])

    monkeypatch.setattr(provider._client, "get_secret", fake_get_secret)
    assert await provider.get("database-password") == "pw"
    assert await provider.get("absent") is None
    with pytest.raises(ValueError, match="invalid secret name"):
        await provider.get("bad/name")
    await provider.close()
