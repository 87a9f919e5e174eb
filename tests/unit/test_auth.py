"""API keys and roles of the gateway (no I/O: an in-memory secrets provider, a fake clock)."""

from __future__ import annotations

import json

import pytest

from coremachine.jobs.v1 import jobs_pb2
from coremachine.services.api_gateway.auth import (
    ApiKeyAuthenticator,
    DisabledAuthenticator,
    Role,
    hash_key,
    key_from,
    parse_api_keys,
)
from coremachine.services.api_gateway.servicer import JobServicer
from coremachine.shared.errors import PermissionDenied, Unauthenticated
from coremachine.shared.secrets import CachedSecrets, SecretsProvider


class MemorySecrets(SecretsProvider):
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.fails = False

    async def get(self, name: str) -> str | None:
        if self.fails:
            raise ConnectionError("vault unreachable")
        return self.values.get(name)

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def secret(**keys: str) -> str:
    """name=role:key pairs -> the `api-keys` secret."""
    return json.dumps(
        [
            {"name": name, "role": spec.split(":", 1)[0], "sha256": hash_key(spec.split(":", 1)[1])}
            for name, spec in keys.items()
        ]
    )


async def authenticator(value: str | None, ttl: float = 60.0):
    clock = Clock()
    inner = MemorySecrets({} if value is None else {"api-keys": value})
    auth = ApiKeyAuthenticator(CachedSecrets(inner, ttl, clock=clock))
    return auth, inner, clock


def test_parse_api_keys_maps_hashes_to_names_and_roles():
    keys = parse_api_keys(secret(ci="submitter:k1", ops="ADMIN:k2"))
    assert keys[hash_key("k1")].name == "ci" and keys[hash_key("k1")].role is Role.SUBMITTER
    assert keys[hash_key("k2")].role is Role.ADMIN


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"name": "x"}),
        json.dumps([{"name": "x", "role": "reader"}]),
        json.dumps([{"name": "x", "role": "reader", "sha256": "abc"}]),
        json.dumps([{"name": "x", "role": "root", "sha256": "a" * 64}]),
        json.dumps([{"name": "x", "role": "reader", "sha256": "a" * 64, "key": "plain"}]),
    ],
)
def test_malformed_key_lists_are_refused_without_echoing_values(text):
    with pytest.raises(ValueError) as err:
        parse_api_keys(text)
    assert "plain" not in str(err.value) and "a" * 64 not in str(err.value)


@pytest.mark.parametrize(
    ("authorization", "api_key", "expected"),
    [
        ("Bearer abc", None, "abc"),
        ("bearer   abc  ", None, "abc"),
        ("Basic abc", None, None),
        ("Bearer", None, None),
        (None, "xyz", "xyz"),
        ("Bearer abc", "xyz", "xyz"),
        (None, "  ", None),
        (None, None, None),
    ],
)
def test_key_from_headers(authorization, api_key, expected):
    assert key_from(authorization, api_key) == expected


async def test_roles_are_ordered():
    auth, _, _ = await authenticator(secret(r="reader:kr", s="submitter:ks", a="admin:ka"))
    await auth.load()
    for key, role in (("kr", Role.READER), ("ks", Role.SUBMITTER), ("ka", Role.ADMIN)):
        for required in Role:
            if role >= required:
                assert (await auth.authenticate(key, required)).role is role
            else:
                with pytest.raises(PermissionDenied, match=f"needs the {required.name.lower()}"):
                    await auth.authenticate(key, required)


@pytest.mark.parametrize("key", [None, "", "unknown", "kr ", "x" * 10_000])
async def test_missing_or_unknown_keys_are_unauthenticated(key):
    auth, _, _ = await authenticator(secret(r="reader:kr"))
    await auth.load()
    with pytest.raises(Unauthenticated):
        await auth.authenticate(key, Role.READER)


async def test_load_fails_fast_without_keys_or_with_a_bad_list():
    auth, _, _ = await authenticator(None)
    with pytest.raises(ValueError, match="GATEWAY_AUTH_DISABLED"):
        await auth.load()
    auth, _, _ = await authenticator("[{]")
    with pytest.raises(ValueError):
        await auth.load()


async def test_rotation_takes_effect_after_the_ttl():
    auth, inner, clock = await authenticator(secret(old="admin:old"), ttl=60)
    await auth.load()
    inner.values["api-keys"] = secret(new="admin:new")
    assert (await auth.authenticate("old", Role.ADMIN)).name == "old"  # still cached
    clock.now = 61
    assert (await auth.authenticate("new", Role.ADMIN)).name == "new"
    with pytest.raises(Unauthenticated):
        await auth.authenticate("old", Role.ADMIN)


async def test_a_broken_update_or_an_unreachable_store_keeps_the_last_good_list():
    auth, inner, clock = await authenticator(secret(a="admin:ka"), ttl=1)
    await auth.load()
    inner.values["api-keys"] = "garbage"
    clock.now = 2
    assert (await auth.authenticate("ka", Role.ADMIN)).name == "a"
    inner.fails = True
    clock.now = 4
    assert (await auth.authenticate("ka", Role.ADMIN)).name == "a"


async def test_removing_the_secret_revokes_every_key():
    auth, inner, clock = await authenticator(secret(a="admin:ka"), ttl=1)
    await auth.load()
    del inner.values["api-keys"]
    clock.now = 2
    with pytest.raises(Unauthenticated):
        await auth.authenticate("ka", Role.READER)


async def test_disabled_auth_lets_anyone_be_admin():
    principal = await DisabledAuthenticator().authenticate(None, Role.ADMIN)
    assert principal.role is Role.ADMIN


def test_every_jobservice_rpc_declares_its_role():
    expected = {
        "SubmitJob": Role.SUBMITTER,
        "CancelJob": Role.SUBMITTER,
        "ResubmitJob": Role.SUBMITTER,
        "GetJob": Role.READER,
        "ListJobs": Role.READER,
        "ListTasks": Role.READER,
        "WatchJob": Role.READER,
        "ListJobTypes": Role.READER,
        "ListWorkers": Role.READER,
        "DiagnoseJob": Role.READER,
    }
    service = jobs_pb2.DESCRIPTOR.services_by_name["JobService"]
    assert {m.name for m in service.methods} == set(expected)
    for name, role in expected.items():
        assert getattr(getattr(JobServicer, name), "required_role", None) is role, name
