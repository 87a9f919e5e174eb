"""Database credentials: password from URL or secrets, Entra ID tokens, with fakes only."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from azure.core.credentials import AccessToken
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from coremachine.shared.database_credentials import (
    ENTRA_SCOPE,
    PASSWORD_SECRET,
    DatabaseCredentials,
)
from coremachine.shared.secrets import SecretsProvider

ENTRA_URL = "postgresql://coremachine-identity@db.postgres.database.azure.com:5432/coremachine"


class FakeSecrets(SecretsProvider):
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.calls: list[str] = []

    async def get(self, name: str) -> str | None:
        self.calls.append(name)
        return self.values.get(name)

    async def close(self) -> None:
        pass


class FakeCredential:
    """Hands out numbered tokens valid for `lifetime` seconds of the fake clock."""

    def __init__(self, clock: FakeClock, lifetime: float = 3600) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.scopes: list[tuple[str, ...]] = []
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.fail_next = False
        self.closed = False

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        self.entered.set()
        await self.release.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("Entra ID unreachable")
        return AccessToken(f"token-{len(self.scopes)}", int(self.clock.now + self.lifetime))

    async def close(self) -> None:
        self.closed = True


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


# -- password ------------------------------------------------------------------


async def test_password_in_the_url_is_used_as_is() -> None:
    secrets = FakeSecrets({PASSWORD_SECRET: "from-vault"})
    url = "postgresql://app:url-pass@db:5432/coremachine"
    credentials = DatabaseCredentials(url, secrets=secrets)
    assert credentials.conninfo == url
    assert await credentials.connect_kwargs() == {}
    assert secrets.calls == []


async def test_password_comes_from_the_secret_when_the_url_has_none() -> None:
    secrets = FakeSecrets({PASSWORD_SECRET: "from-vault"})
    credentials = DatabaseCredentials("postgresql://app@db/coremachine", secrets=secrets)
    assert await credentials.connect_kwargs() == {"password": "from-vault"}
    # A rotated secret is picked up by the next connection.
    secrets.values[PASSWORD_SECRET] = "rotated"
    assert await credentials.connect_kwargs() == {"password": "rotated"}
    assert secrets.calls == [PASSWORD_SECRET, PASSWORD_SECRET]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:@/postgres?host=/tmp/pgdata",  # pgserver's URL: empty password
        "host=127.0.0.1 user=postgres dbname=test",
    ],
)
async def test_no_password_anywhere_leaves_it_to_libpq(url: str) -> None:
    assert await DatabaseCredentials(url).connect_kwargs() == {}
    assert await DatabaseCredentials(url, secrets=FakeSecrets({})).connect_kwargs() == {}


# -- Entra ID ----------------------------------------------------------------------


async def test_entra_token_is_the_password_over_tls() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock)
    credentials = DatabaseCredentials(ENTRA_URL, auth="entra", credential=credential, clock=clock)
    kwargs = await credentials.connect_kwargs()
    assert kwargs == {"password": "token-1", "sslmode": "require"}
    assert credential.scopes == [(ENTRA_SCOPE,)]
    # This is what psycopg builds from conninfo + kwargs: the token wins, the user stays.
    params = conninfo_to_dict(make_conninfo(credentials.conninfo, **kwargs))
    assert params["user"] == "coremachine-identity"
    assert params["password"] == "token-1"


async def test_entra_keeps_an_explicit_sslmode() -> None:
    clock = FakeClock()
    credentials = DatabaseCredentials(
        ENTRA_URL + "?sslmode=verify-full",
        auth="entra",
        credential=FakeCredential(clock),
        clock=clock,
    )
    assert await credentials.connect_kwargs() == {"password": "token-1"}


async def test_entra_token_is_reused_then_refreshed_before_expiry() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock, lifetime=3600)
    credentials = DatabaseCredentials(
        ENTRA_URL, auth="entra", credential=credential, refresh_margin_seconds=300, clock=clock
    )
    assert (await credentials.connect_kwargs())["password"] == "token-1"
    clock.now += 3600 - 300 - 1  # one second before the refresh point
    assert (await credentials.connect_kwargs())["password"] == "token-1"
    clock.now += 1  # five minutes before expiry: renew
    assert (await credentials.connect_kwargs())["password"] == "token-2"
    assert len(credential.scopes) == 2


async def test_short_lived_tokens_are_renewed_at_half_life_not_every_time() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock, lifetime=120)  # shorter than the 300 s margin
    credentials = DatabaseCredentials(ENTRA_URL, auth="entra", credential=credential, clock=clock)
    assert (await credentials.connect_kwargs())["password"] == "token-1"
    clock.now += 59
    assert (await credentials.connect_kwargs())["password"] == "token-1"
    clock.now += 1
    assert (await credentials.connect_kwargs())["password"] == "token-2"


async def test_concurrent_connections_share_one_token_request() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock)
    credential.release.clear()
    credentials = DatabaseCredentials(ENTRA_URL, auth="entra", credential=credential, clock=clock)
    connections = [asyncio.create_task(credentials.connect_kwargs()) for _ in range(10)]
    # The callers were scheduled before this test resumes, so once the first is
    # inside get_token every other one has already asked for a token too.
    await credential.entered.wait()
    assert not any(task.done() for task in connections)
    credential.release.set()
    results = await asyncio.gather(*connections)
    assert {r["password"] for r in results} == {"token-1"}
    assert len(credential.scopes) == 1


async def test_a_failed_token_request_is_retried_by_the_next_connection() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock)
    credential.fail_next = True
    credentials = DatabaseCredentials(ENTRA_URL, auth="entra", credential=credential, clock=clock)
    with pytest.raises(RuntimeError, match="unreachable"):
        await credentials.connect_kwargs()
    assert (await credentials.connect_kwargs())["password"] == "token-2"


@pytest.mark.parametrize(
    ("url", "auth", "message"),
    [
        ("postgresql://app:secret@db/x", "entra", "remove the password"),
        ("postgresql://db/x", "entra", "must name the Entra user"),
        ("postgresql://app@db/x", "kerberos", "unknown DATABASE_AUTH"),
    ],
)
def test_misconfiguration_fails_at_construction(url: str, auth: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DatabaseCredentials(url, auth=auth)


# -- wiring ----------------------------------------------------------------------


async def test_pool_kwargs_is_a_fresh_async_callable_with_extras() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock, lifetime=600)
    credentials = DatabaseCredentials(ENTRA_URL, auth="entra", credential=credential, clock=clock)
    resolve = credentials.pool_kwargs(autocommit=True, prepare_threshold=None)
    assert await resolve() == {
        "autocommit": True,
        "prepare_threshold": None,
        "password": "token-1",
        "sslmode": "require",
    }
    clock.now += 600
    assert (await resolve())["password"] == "token-2"


async def test_connect_passes_fresh_credentials_to_psycopg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def fake_connect(conninfo: str, **kwargs: Any) -> str:
        calls.append((conninfo, kwargs))
        return "connection"

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", fake_connect)
    secrets = FakeSecrets({PASSWORD_SECRET: "pw"})
    credentials = DatabaseCredentials("postgresql://app@db/x", secrets=secrets)
    assert await credentials.connect(autocommit=True) == "connection"
    assert calls == [("postgresql://app@db/x", {"password": "pw", "autocommit": True})]


async def test_close_closes_only_a_credential_it_created() -> None:
    clock = FakeClock()
    credential = FakeCredential(clock)
    credentials = DatabaseCredentials(ENTRA_URL, auth="entra", credential=credential, clock=clock)
    await credentials.close()
    assert not credential.closed
