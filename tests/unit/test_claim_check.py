"""Claim check on the in-memory blob store."""

from __future__ import annotations

import hashlib
import json

import pytest

from coremachine.shared.blobstores.memory import MemoryBlobStore
from coremachine.shared.claim_check import (
    DEFAULT_CONTAINER,
    DEFAULT_THRESHOLD_BYTES,
    ClaimCheck,
    ClaimCheckError,
    ClaimCheckIntegrityError,
    is_reference,
)

THRESHOLD = 1024


@pytest.fixture
def store() -> MemoryBlobStore:
    return MemoryBlobStore()


@pytest.fixture
def claim_check(store: MemoryBlobStore) -> ClaimCheck:
    return ClaimCheck(store, threshold_bytes=THRESHOLD)


async def _blob_names(store: MemoryBlobStore) -> list[str]:
    return [info.name async for info in store.list_blobs(DEFAULT_CONTAINER)]


def test_default_threshold_leaves_headroom_under_service_bus_standard_limit() -> None:
    service_bus_standard_limit = 256 * 1024
    assert service_bus_standard_limit - 32 * 1024 >= DEFAULT_THRESHOLD_BYTES


async def test_payload_at_or_below_threshold_passes_through(
    claim_check: ClaimCheck, store: MemoryBlobStore
) -> None:
    for payload in (b"", b'{"task": 1}', b"x" * THRESHOLD):
        wrapped = await claim_check.wrap(payload, "job/j1/task/t1")
        assert wrapped == payload
        assert not is_reference(wrapped)
        assert await claim_check.unwrap(wrapped) == payload
    # Nothing was stored (the container was never even created).
    assert not await store.exists(DEFAULT_CONTAINER, "anything")


async def test_payload_above_threshold_is_stored_and_restored(
    claim_check: ClaimCheck, store: MemoryBlobStore
) -> None:
    payload = bytes(range(256)) * 8 + b"!"  # THRESHOLD * 2 + 1 bytes
    wrapped = await claim_check.wrap(payload, "job/j1/task/t1")
    assert is_reference(wrapped)
    assert ClaimCheck.is_reference(wrapped)
    assert len(wrapped) < 512
    reference = json.loads(wrapped)["$claim_check"]
    digest = hashlib.sha256(payload).hexdigest()
    assert reference == {
        "container": DEFAULT_CONTAINER,
        "name": f"job/j1/task/t1/{digest}",
        "size": len(payload),
        "sha256": digest,
    }
    assert await store.get(DEFAULT_CONTAINER, reference["name"]) == payload
    assert await claim_check.unwrap(wrapped) == payload


async def test_wrapping_the_same_payload_twice_stores_one_blob(
    claim_check: ClaimCheck, store: MemoryBlobStore
) -> None:
    payload = b"y" * (THRESHOLD + 1)
    first = await claim_check.wrap(payload, "job/j1/task/t1")
    second = await claim_check.wrap(payload, "job/j1/task/t1")
    assert first == second
    assert len(await _blob_names(store)) == 1


async def test_unwrap_detects_a_tampered_payload(
    claim_check: ClaimCheck, store: MemoryBlobStore
) -> None:
    payload = b"a" * (THRESHOLD + 10)
    wrapped = await claim_check.wrap(payload, "k")
    name = json.loads(wrapped)["$claim_check"]["name"]
    # Same size, different bytes: only the SHA-256 can tell.
    await store.put(DEFAULT_CONTAINER, name, b"b" * (THRESHOLD + 10))
    with pytest.raises(ClaimCheckIntegrityError, match="SHA-256"):
        await claim_check.unwrap(wrapped)
    await store.put(DEFAULT_CONTAINER, name, b"a" * (THRESHOLD + 9))
    with pytest.raises(ClaimCheckIntegrityError, match="bytes"):
        await claim_check.unwrap(wrapped)


async def test_unwrap_of_a_missing_payload_fails_clearly(
    claim_check: ClaimCheck, store: MemoryBlobStore
) -> None:
    wrapped = await claim_check.wrap(b"z" * (THRESHOLD + 1), "k")
    name = json.loads(wrapped)["$claim_check"]["name"]
    await store.delete(DEFAULT_CONTAINER, name)
    with pytest.raises(ClaimCheckError, match="missing"):
        await claim_check.unwrap(wrapped)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"plain bytes",
        b'{"task_id": "t1", "params": {"n": 3}}',
        b'{"$claim_check": "not an object"}',
        b'{"$claim_check": {"container": "c", "name": "n"}}',
        b'{"$claim_check": {"container": "c", "name": "n", "size": "1", "sha256": "x"}}',
        b'{"$claim_check": {broken json',
        b"\xff\xfe\x00 binary",
    ],
)
async def test_unwrap_passes_non_references_through(claim_check: ClaimCheck, data: bytes) -> None:
    assert not is_reference(data)
    assert await claim_check.unwrap(data) == data


async def test_a_small_payload_that_looks_like_a_reference_survives_the_round_trip(
    claim_check: ClaimCheck,
) -> None:
    lookalike = b'{"$claim_check":{"container":"elsewhere","name":"n","size":1,"sha256":"00"}}'
    assert is_reference(lookalike)
    wrapped = await claim_check.wrap(lookalike, "k")
    assert wrapped != lookalike
    assert await claim_check.unwrap(wrapped) == lookalike


@pytest.mark.parametrize(
    ("key", "expected_prefix"),
    [
        ("job/../../etc", "job/etc/"),
        ("/abs//key/", "abs/key/"),
        ("weird key:*?", "weird_key___/"),
        ("", "payload/"),
        ("..", "payload/"),
    ],
)
async def test_keys_become_safe_blob_names(
    claim_check: ClaimCheck, store: MemoryBlobStore, key: str, expected_prefix: str
) -> None:
    payload = b"p" * (THRESHOLD + 1)
    wrapped = await claim_check.wrap(payload, key)
    name = json.loads(wrapped)["$claim_check"]["name"]
    assert name == expected_prefix + hashlib.sha256(payload).hexdigest()
    assert await claim_check.unwrap(wrapped) == payload


async def test_custom_container_is_created_on_first_use(store: MemoryBlobStore) -> None:
    claim_check = ClaimCheck(store, container="big-payloads", threshold_bytes=10)
    wrapped = await claim_check.wrap(b"0123456789abc", "k")
    assert json.loads(wrapped)["$claim_check"]["container"] == "big-payloads"
    assert [i.name async for i in store.list_blobs("big-payloads")] == [
        json.loads(wrapped)["$claim_check"]["name"]
    ]
