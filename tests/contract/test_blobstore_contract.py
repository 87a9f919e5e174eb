"""One contract suite for every blob-store adapter: memory, local directory, Azure (on Azurite).

Azurite is started once per session by the `azurite_connection_string`
fixture (tests/azurite.py); it is installed by `make node-deps` (and `make test`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coremachine.shared.blobstore import (
    BlobAlreadyExists,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    BlobStoreError,
    ContainerNotFound,
    InvalidBlobName,
)
from coremachine.shared.blobstores.local import LocalBlobStore
from coremachine.shared.blobstores.memory import MemoryBlobStore
from tests.azurite import azurite_connection_string  # noqa: F401 (a fixture)


@pytest.fixture(params=["memory", "local", "azure"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """Each adapter in turn, fresh for every test."""
    adapter: BlobStore
    if request.param == "memory":
        adapter = MemoryBlobStore()
    elif request.param == "local":
        adapter = LocalBlobStore(tmp_path / "blobs")
    else:
        from coremachine.shared.blobstores.azure import AzureBlobStore

        connection_string = request.getfixturevalue("azurite_connection_string")
        adapter = AzureBlobStore.from_connection_string(connection_string)
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture
async def container(store: BlobStore) -> str:
    """A new, empty container (unique, so Azurite tests never see each other's blobs)."""
    name = f"ct-{uuid.uuid4().hex[:12]}"
    await store.ensure_container(name)
    return name


async def _names(store: BlobStore, container: str, **kwargs: object) -> list[str]:
    return [info.name async for info in store.list_blobs(container, **kwargs)]  # type: ignore[arg-type]


def _missing_container() -> str:
    return f"missing-{uuid.uuid4().hex[:12]}"


# -- put / get --------------------------------------------------------------


async def test_put_then_get_returns_the_same_bytes(store: BlobStore, container: str) -> None:
    data = bytes(range(256)) * 4
    info = await store.put(container, "jobs/j1/result.bin", data)
    assert (info.container, info.name, info.size) == (container, "jobs/j1/result.bin", len(data))
    assert await store.get(container, "jobs/j1/result.bin") == data
    assert await store.exists(container, "jobs/j1/result.bin")


async def test_empty_blob_round_trips(store: BlobStore, container: str) -> None:
    info = await store.put(container, "empty", b"")
    assert info.size == 0
    assert await store.get(container, "empty") == b""


async def test_put_overwrites_by_default(store: BlobStore, container: str) -> None:
    first = await store.put(container, "doc", b"version 1")
    second = await store.put(container, "doc", b"version 2, longer")
    assert await store.get(container, "doc") == b"version 2, longer"
    assert (await store.properties(container, "doc")).size == len(b"version 2, longer")
    assert first.etag != second.etag


async def test_put_without_overwrite_refuses_an_existing_blob(
    store: BlobStore, container: str
) -> None:
    await store.put(container, "once", b"original")
    with pytest.raises(BlobAlreadyExists):
        await store.put(container, "once", b"intruder", overwrite=False)
    assert await store.get(container, "once") == b"original"
    # A free name is written normally.
    await store.put(container, "fresh", b"new", overwrite=False)
    assert await store.get(container, "fresh") == b"new"


async def test_concurrent_puts_without_overwrite_have_exactly_one_winner(
    store: BlobStore, container: str
) -> None:
    payloads = [f"writer {i}".encode() * 1000 for i in range(12)]
    results = await asyncio.gather(
        *(store.put(container, "contested", p, overwrite=False) for p in payloads),
        return_exceptions=True,
    )
    winners = [p for p, r in zip(payloads, results, strict=True) if isinstance(r, BlobInfo)]
    losers = [r for r in results if isinstance(r, BlobAlreadyExists)]
    assert len(winners) == 1, results
    assert len(losers) == len(payloads) - 1, results
    assert await store.get(container, "contested") == winners[0]


async def test_large_blob_round_trips(store: BlobStore, container: str) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    info = await store.put(container, "big/blob.bin", data)
    assert info.size == len(data)
    assert await store.get(container, "big/blob.bin") == data
    assert (await store.properties(container, "big/blob.bin")).size == len(data)


# -- properties ---------------------------------------------------------------


async def test_properties_round_trip(store: BlobStore, container: str) -> None:
    # Azure keeps last-modified to the second; allow for that and a little clock skew.
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    put_info = await store.put(
        container,
        "report.json",
        b'{"ok": true}',
        content_type="application/json",
        metadata={"job_id": "abc123", "stage": "2"},
    )
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    info = await store.properties(container, "report.json")
    assert info.container == container
    assert info.name == "report.json"
    assert info.size == len(b'{"ok": true}')
    assert info.content_type == "application/json"
    assert dict(info.metadata) == {"job_id": "abc123", "stage": "2"}
    assert info.last_modified.tzinfo is not None
    assert before <= info.last_modified <= after
    assert info.etag
    # What put returned describes the same version.
    assert put_info.etag == info.etag
    assert (put_info.size, put_info.content_type) == (info.size, info.content_type)
    assert dict(put_info.metadata) == dict(info.metadata)


async def test_content_type_defaults_to_octet_stream(store: BlobStore, container: str) -> None:
    await store.put(container, "raw", b"\x00\x01")
    info = await store.properties(container, "raw")
    assert info.content_type == "application/octet-stream"
    assert dict(info.metadata) == {}


async def test_overwrite_replaces_content_type_and_metadata(
    store: BlobStore, container: str
) -> None:
    await store.put(container, "x", b"1", content_type="text/plain", metadata={"a": "1"})
    await store.put(container, "x", b"22", content_type="text/csv", metadata={"b": "2"})
    info = await store.properties(container, "x")
    assert (info.size, info.content_type, dict(info.metadata)) == (2, "text/csv", {"b": "2"})


async def test_invalid_metadata_is_rejected(store: BlobStore, container: str) -> None:
    with pytest.raises(ValueError):
        await store.put(container, "m", b"", metadata={"not a name": "x"})
    with pytest.raises(ValueError):
        await store.put(container, "m", b"", metadata={"key": "non-ascii é"})
    assert not await store.exists(container, "m")


# -- listing ------------------------------------------------------------------


async def test_list_returns_blobs_in_name_order_with_properties(
    store: BlobStore, container: str
) -> None:
    for name in ["logs/b", "logs/a", "other/x", "logs/c/d", "logsx"]:
        await store.put(container, name, name.encode(), metadata={"n": name.replace("/", "_")})
    infos = [info async for info in store.list_blobs(container)]
    assert [i.name for i in infos] == ["logs/a", "logs/b", "logs/c/d", "logsx", "other/x"]
    by_name = {i.name: i for i in infos}
    assert by_name["logs/c/d"].size == len(b"logs/c/d")
    assert dict(by_name["logs/c/d"].metadata) == {"n": "logs_c_d"}
    assert all(i.container == container and i.last_modified.tzinfo for i in infos)


async def test_list_with_prefix_and_limit(store: BlobStore, container: str) -> None:
    for name in ["logs/b", "logs/a", "other/x", "logs/c/d", "logsx"]:
        await store.put(container, name, b".")
    assert await _names(store, container, prefix="logs/") == ["logs/a", "logs/b", "logs/c/d"]
    assert await _names(store, container, prefix="logs") == [
        "logs/a",
        "logs/b",
        "logs/c/d",
        "logsx",
    ]
    assert await _names(store, container, prefix="logs/c") == ["logs/c/d"]
    assert await _names(store, container, prefix="nothing") == []
    assert await _names(store, container, limit=2) == ["logs/a", "logs/b"]
    assert await _names(store, container, prefix="logs/", limit=1) == ["logs/a"]
    assert await _names(store, container, limit=0) == []
    assert await _names(store, container, limit=100) == [
        "logs/a",
        "logs/b",
        "logs/c/d",
        "logsx",
        "other/x",
    ]


async def test_list_of_an_empty_container_is_empty(store: BlobStore, container: str) -> None:
    assert await _names(store, container) == []


# -- missing things -------------------------------------------------------------


async def test_missing_blob(store: BlobStore, container: str) -> None:
    with pytest.raises(BlobNotFound):
        await store.get(container, "nope")
    with pytest.raises(BlobNotFound):
        await store.properties(container, "dir/nope")
    assert not await store.exists(container, "nope")
    assert await store.delete(container, "nope") is False


async def test_missing_container(store: BlobStore) -> None:
    missing = _missing_container()
    with pytest.raises(ContainerNotFound):
        await store.get(missing, "a")
    with pytest.raises(ContainerNotFound):
        await store.properties(missing, "a")
    with pytest.raises(ContainerNotFound):
        await store.put(missing, "a", b"data")
    with pytest.raises(ContainerNotFound):
        await store.delete(missing, "a")
    with pytest.raises(ContainerNotFound):
        await _names(store, missing)
    with pytest.raises(ContainerNotFound):
        await _names(store, missing, limit=0)
    assert not await store.exists(missing, "a")


async def test_ensure_container_is_idempotent_and_keeps_blobs(
    store: BlobStore, container: str
) -> None:
    await store.put(container, "keep", b"me")
    await store.ensure_container(container)
    assert await store.get(container, "keep") == b"me"


# -- delete -----------------------------------------------------------------------


async def test_delete(store: BlobStore, container: str) -> None:
    await store.put(container, "a/b", b"1")
    await store.put(container, "a/c", b"2")
    assert await store.delete(container, "a/b") is True
    assert not await store.exists(container, "a/b")
    with pytest.raises(BlobNotFound):
        await store.get(container, "a/b")
    assert await store.delete(container, "a/b") is False
    assert await _names(store, container) == ["a/c"]
    assert await store.get(container, "a/c") == b"2"


async def test_a_deleted_folder_name_can_become_a_blob(store: BlobStore, container: str) -> None:
    await store.put(container, "a/b/c", b"deep")
    await store.delete(container, "a/b/c")
    await store.put(container, "a", b"now a blob")
    assert await _names(store, container) == ["a"]
    assert await store.get(container, "a") == b"now a blob"


# -- names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../escape", "a/../../escape", "/etc/passwd", "a//b", "a/./b", "trailing/", "", "a\\b"]
)
async def test_unsafe_blob_names_are_rejected(store: BlobStore, container: str, name: str) -> None:
    with pytest.raises(InvalidBlobName):
        await store.put(container, name, b"x")
    with pytest.raises(InvalidBlobName):
        await store.get(container, name)
    with pytest.raises(InvalidBlobName):
        await store.exists(container, name)


@pytest.mark.parametrize("container_name", ["Upper", "under_score", "ab", "..", "a--b", "-ab"])
async def test_invalid_container_names_are_rejected(store: BlobStore, container_name: str) -> None:
    with pytest.raises(InvalidBlobName):
        await store.ensure_container(container_name)
    with pytest.raises(InvalidBlobName):
        await store.put(container_name, "a", b"x")


# -- local directory specifics ------------------------------------------------------


async def test_local_store_keeps_blobs_as_plain_files_without_leftovers(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.ensure_container("payloads")
    await store.put("payloads", "job/1.bin", b"content", metadata={"k": "v"})
    await store.put("payloads", "job/1.bin", b"content 2")
    assert (tmp_path / "payloads" / "job" / "1.bin").read_bytes() == b"content 2"
    assert list((tmp_path / ".tmp").iterdir()) == []
    # Properties survive a new store instance (another process) on the same root.
    await store.put("payloads", "job/2.bin", b"x", content_type="text/plain", metadata={"a": "b"})
    info = await LocalBlobStore(tmp_path).properties("payloads", "job/2.bin")
    assert (info.content_type, dict(info.metadata)) == ("text/plain", {"a": "b"})


async def test_local_store_refuses_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"do not read")
    store = LocalBlobStore(tmp_path / "root")
    await store.ensure_container("box")
    (tmp_path / "root" / "box" / "link").symlink_to(outside)
    with pytest.raises(InvalidBlobName):
        await store.get("box", "link/secret")
    with pytest.raises(InvalidBlobName):
        await store.put("box", "link/planted", b"x")
    assert not (outside / "planted").exists()


async def test_local_store_reports_a_blob_that_is_also_a_folder(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.ensure_container("box")
    await store.put("box", "a", b"file")
    with pytest.raises(BlobStoreError, match="clashes"):
        await store.put("box", "a/b", b"x")
    await store.put("box", "c/d", b"x")
    with pytest.raises(BlobStoreError, match="clashes"):
        await store.put("box", "c", b"x")
    with pytest.raises(BlobNotFound):
        await store.get("box", "c")
    assert await store.get("box", "a") == b"file"
