"""The container jobs' parameters, filters and handlers, on the in-memory blob store."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from coremachine.app import PermanentError, PreviousResult, TaskContext
from coremachine.app._errors import is_retryable
from coremachine.builtin import containers as container_contents
from coremachine.builtin import containers as container_summary
from coremachine.builtin.container_listing import BlobFilter
from coremachine.builtin.containers import (
    ListContainerContentsParameters,
    SummarizeContainerParameters,
)
from coremachine.shared.blobstore import BlobInfo
from coremachine.shared.blobstores.memory import MemoryBlobStore
from coremachine.testing import task_context

CONTAINER = "unit-blobs"
MIB = 1024 * 1024
# name -> size: unique sizes, so "largest" has one right answer.
BLOBS = {
    "a/one.tif": 3 * MIB,
    "a/two.TIF": 2 * MIB + 1,
    "a/notes.txt": 100,
    "b/data.json": 2048,
    "b/big.tif": 5 * MIB,
    "README": 10,
}


@pytest.fixture
async def store() -> MemoryBlobStore:
    store = MemoryBlobStore()
    await store.ensure_container(CONTAINER)
    for name, size in BLOBS.items():
        await store.put(CONTAINER, name, b"\0" * size, metadata={"origin": "unit"})
    return store


def context(store: MemoryBlobStore, previous: list[PreviousResult] | None = None) -> TaskContext:
    return task_context(blobs=store, previous_results=previous)


def params(model: type, **values: Any) -> dict[str, Any]:
    """Parameters as the worker receives them: validated, then JSON-shaped."""
    return model.model_validate({"container_name": CONTAINER, **values}).model_dump(mode="json")


async def summarize(store: MemoryBlobStore, **values: Any) -> dict[str, Any]:
    return await container_summary.summarize(
        params(SummarizeContainerParameters, **values), context(store)
    )


# -- parameters --------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({}, "container_name"),
        ({"container_name": "Not_Valid"}, "container_name"),
        ({"container_name": "ok-name", "file_limit": 0}, "file_limit"),
        ({"container_name": "ok-name", "file_limit": 10_001}, "file_limit"),
        ({"container_name": "ok-name", "min_size_mb": 2, "max_size_mb": 1}, "max_size_mb"),
        ({"container_name": "ok-name", "extensions": ["a/b"]}, "extensions"),
        (
            {
                "container_name": "ok-name",
                "modified_after": "2024-02-01",
                "modified_before": "2024-01-01",
            },
            "modified_before",
        ),
        ({"container_name": "ok-name", "bogus": 1}, "bogus"),
    ],
)
def test_bad_parameters_name_the_field(values, field):
    with pytest.raises(ValidationError) as raised:
        ListContainerContentsParameters.model_validate(values)
    assert raised.value.errors()[0]["loc"] == (field,)


def test_equivalent_extensions_normalize_to_the_same_parameters():
    one = params(SummarizeContainerParameters, extensions=["TIF", ".json", "tif"])
    two = params(SummarizeContainerParameters, extensions=[".json", ".tif"])
    assert one == two and one["extensions"] == [".json", ".tif"]


# -- filters -----------------------------------------------------------------


def info(name: str, size: int, day: int) -> BlobInfo:
    return BlobInfo(CONTAINER, name, size, "x", dt.datetime(2024, 1, day, tzinfo=dt.UTC), '"e"')


def test_filter_applies_extensions_sizes_and_dates():
    blob_filter = BlobFilter.from_params(
        params(
            SummarizeContainerParameters,
            extensions=["tif"],
            min_size_mb=1,
            max_size_mb=4,
            modified_after="2024-01-02T00:00:00Z",
            modified_before="2024-01-05T00:00:00",
        )
    )
    assert blob_filter.matches(info("x.TIF", 2 * MIB, 3))
    assert not blob_filter.matches(info("x.txt", 2 * MIB, 3))  # extension
    assert not blob_filter.matches(info("x.tif", MIB - 1, 3))  # too small
    assert not blob_filter.matches(info("x.tif", 4 * MIB + 1, 3))  # too large
    assert blob_filter.matches(info("x.tif", 4 * MIB, 3))  # bounds are inclusive
    assert not blob_filter.matches(info("x.tif", 2 * MIB, 2))  # not strictly after
    assert not blob_filter.matches(info("x.tif", 2 * MIB, 5))  # not strictly before


# -- summarize_container -----------------------------------------------------


async def test_summary_counts_sizes_by_extension_and_largest(store):
    summary = await summarize(store)
    assert summary["file_count"] == len(BLOBS)
    assert summary["total_size_bytes"] == sum(BLOBS.values())
    assert summary["by_extension"][".tif"]["count"] == 3
    assert summary["by_extension"][".tif"]["size_bytes"] == 10 * MIB + 1
    assert summary["by_extension"]["(none)"]["count"] == 1
    assert [b["name"] for b in summary["largest"][:3]] == ["b/big.tif", "a/one.tif", "a/two.TIF"]
    assert summary["truncated"] is False and summary["scanned"] == len(BLOBS)


async def test_summary_filters_and_file_limit(store):
    summary = await summarize(store, prefix="a/", extensions=[".tif"], min_size_mb=2.5)
    assert summary["file_count"] == 1 and summary["largest"][0]["name"] == "a/one.tif"
    assert summary["scanned"] == 3  # the prefix is applied by the listing
    assert summary["filters"]["prefix"] == "a/"
    limited = await summarize(store, file_limit=2)
    assert limited["file_count"] == 2 and limited["truncated"] is True


async def test_a_missing_container_fails_permanently(store):
    with pytest.raises(PermanentError) as raised:
        await container_summary.summarize(
            params(SummarizeContainerParameters) | {"container_name": "no-such"}, context(store)
        )
    assert not is_retryable(raised.value) and "no-such" in str(raised.value)


# -- list_container_contents -------------------------------------------------


async def test_list_analyze_and_summarize_inventory(store):
    listing = await container_contents.list_blobs(
        params(ListContainerContentsParameters, extensions=["tif", "json"]), context(store)
    )
    assert listing["blob_names"] == ["a/one.tif", "a/two.TIF", "b/big.tif", "b/data.json"]

    analyzed = [
        await container_contents.analyze_blob(
            {"container_name": CONTAINER, "blob_name": n}, context(store)
        )
        for n in [*listing["blob_names"], "gone.tif"]
    ]
    first = analyzed[0]
    assert first["size_bytes"] == 3 * MIB and first["file_extension"] == ".tif"
    assert first["metadata"] == {"origin": "unit"} and first["etag"]
    assert first["content_type"] and first["last_modified"]
    assert analyzed[-1] == {"blob_name": "gone.tif", "found": False}

    previous = [PreviousResult(i, "completed", r) for i, r in enumerate(analyzed)]
    summary = await container_contents.summarize_inventory(
        {"container_name": CONTAINER}, context(store, previous)
    )
    assert summary["file_count"] == 4 and summary["missing"] == 1
    assert summary["total_size_bytes"] == 10 * MIB + 1 + 2048
    assert summary["by_extension"][".json"] == {"count": 1, "size_bytes": 2048, "size_mb": 0.001953}
