"""The container jobs and the claim check end to end: four service processes, real blobs.

One stack reads Azure Blob Storage (Azurite) with a claim-check threshold of
1 KiB, so large results, parameters and fan-ins travel as blobs; another reads
the local directory store with the default threshold. Every expectation is
computed from the blobs the test uploaded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import httpx
import psycopg
import pytest

from coremachine.shared.blobstore import BlobInfo, BlobStore
from coremachine.shared.blobstores.azure import AzureBlobStore
from coremachine.shared.blobstores.local import LocalBlobStore
from coremachine.stack.processes import Stack
from tests.azurite import azurite_connection_string  # noqa: F401 (a fixture)
from tests.databases import drop_database
from tests.e2e.conftest import auth_headers, make_stack, wait_for_job

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
THRESHOLD = 1024
PAYLOADS = "e2e-payloads"
DATA = "survey-data"
EXTENSIONS = [".tif", ".json", ".csv", ".txt", ".png", ""]
CONTENT_TYPES = {".tif": "image/tiff", ".json": "application/json", ".csv": "text/csv"}
PREFIXES = ["imagery/", "vectors/", "docs/"]
# Per-blob metadata large enough that each analysis result exceeds the
# threshold and all of them together exceed FanIn's 64 KiB inline limit.
NOTE = "n" * 1400


@dataclass(frozen=True)
class Blob:
    name: str
    size: int
    modified: dt.datetime

    @property
    def extension(self) -> str:
        return PurePosixPath(self.name).suffix.lower() or "(none)"


def blob_specs(count: int, start: int = 0) -> dict[str, int]:
    """Deterministic names and unique sizes: a few bytes to over 2 MiB, varied extensions."""
    specs = {}
    for i in range(start, start + count):
        extension = EXTENSIONS[i % len(EXTENSIONS)]
        extension = extension.upper() if i % 7 == 0 else extension  # case must not matter
        size = MIB + i * 20_011 if i % 8 == 0 else 100 + i * 3_001
        specs[f"{PREFIXES[i % len(PREFIXES)]}file-{i:03d}{extension}"] = size
    return specs


async def upload(store: BlobStore, container: str, specs: dict[str, int]) -> dict[str, Blob]:
    await store.ensure_container(container)

    async def one(name: str, size: int) -> BlobInfo:
        extension = PurePosixPath(name).suffix.lower()
        return await store.put(
            container,
            name,
            os.urandom(size),
            content_type=CONTENT_TYPES.get(extension),
            metadata={"origin": "e2e", "note": NOTE},
        )

    infos = await asyncio.gather(*(one(n, s) for n, s in specs.items()))
    return {i.name: Blob(i.name, i.size, i.last_modified) for i in infos}


async def tick_past(store: BlobStore, instant: dt.datetime) -> None:
    """Waits (deadline) until the store's clock is past instant, so later blobs sort after."""
    await store.ensure_container("e2e-clock")
    deadline = time.monotonic() + 10
    while (await store.put("e2e-clock", "tick", b"")).last_modified <= instant:
        assert time.monotonic() < deadline, "the blob store's clock did not advance"
        await asyncio.sleep(0.05)  # poll interval of the condition above


def summary_of(blobs: list[Blob]) -> dict[str, Any]:
    """What a summary must say about these blobs."""
    by_extension: dict[str, dict[str, int]] = {}
    for blob in blobs:
        bucket = by_extension.setdefault(blob.extension, {"count": 0, "size_bytes": 0})
        bucket["count"] += 1
        bucket["size_bytes"] += blob.size
    largest = sorted(blobs, key=lambda b: -b.size)[:10]
    return {
        "file_count": len(blobs),
        "total_size_bytes": sum(b.size for b in blobs),
        "by_extension": by_extension,
        "largest": [(b.name, b.size) for b in largest],
    }


def check_summary(result: dict[str, Any], blobs: list[Blob]) -> None:
    expected = summary_of(blobs)
    assert result["file_count"] == expected["file_count"]
    assert result["total_size_bytes"] == expected["total_size_bytes"]
    assert {
        ext: {"count": b["count"], "size_bytes": b["size_bytes"]}
        for ext, b in result["by_extension"].items()
    } == expected["by_extension"]
    assert [(b["name"], b["size_bytes"]) for b in result["largest"]] == expected["largest"]


def submit(client: httpx.Client, job_type: str, **params: Any) -> dict[str, Any]:
    response = client.post(f"/api/jobs/submit/{job_type}", json=params)
    assert response.status_code == 202, response.text
    return wait_for_job(client, response.json()["job"]["job_id"], timeout=180)


def tasks(stack: Stack, job_id: str) -> list[tuple[int, int, str, Any, Any]]:
    with psycopg.connect(stack.database_url) as conn:
        return conn.execute(
            "SELECT stage, task_index, status::text, parameters, result_data"
            " FROM coremachine.tasks WHERE job_id = %s ORDER BY stage, task_index",
            (job_id,),
        ).fetchall()


def is_reference(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"$claim_check"}


# -- Azure (Azurite) ---------------------------------------------------------


@dataclass
class AzureSetup:
    stack: Stack
    connection_string: str
    early: dict[str, Blob]
    late: dict[str, Blob]
    boundary: dt.datetime  # every early blob is at or before it, every late one after

    @property
    def blobs(self) -> list[Blob]:
        return sorted([*self.early.values(), *self.late.values()], key=lambda b: b.name)


async def _upload_in_two_batches(connection_string: str) -> tuple[dict, dict, dt.datetime]:
    store = AzureBlobStore.from_connection_string(connection_string)
    try:
        early = await upload(store, DATA, blob_specs(32))
        boundary = max(b.modified for b in early.values())
        await tick_past(store, boundary)
        late = await upload(store, DATA, blob_specs(16, start=32))
        return early, late, boundary
    finally:
        await store.close()


@pytest.fixture(scope="module")
def azure(
    admin_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    azurite_connection_string: str,  # noqa: F811 (the imported fixture)
) -> Iterator[AzureSetup]:
    early, late, boundary = asyncio.run(_upload_in_two_batches(azurite_connection_string))
    stack, url = make_stack(
        admin_url,
        tmp_path_factory.mktemp("container-azure"),
        extra_env={
            "BLOB_STORE": "azure",
            "AZURE_STORAGE_CONNECTION_STRING": azurite_connection_string,
            "CLAIM_CHECK_CONTAINER": PAYLOADS,
            "CLAIM_CHECK_THRESHOLD_BYTES": str(THRESHOLD),
        },
    )
    stack.up()
    yield AzureSetup(stack, azurite_connection_string, early, late, boundary)
    codes = stack.stop()
    drop_database(admin_url, url)
    assert all(code == 0 for code in codes.values()), f"unclean exit codes: {codes}"


@pytest.fixture
def client(azure: AzureSetup) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=azure.stack.http_url, timeout=30, headers=auth_headers(azure.stack.api_key)
    ) as c:
        yield c


def payload_blobs(azure: AzureSetup, job_id: str) -> list[str]:
    async def names() -> list[str]:
        store = AzureBlobStore.from_connection_string(azure.connection_string)
        try:
            return [b.name async for b in store.list_blobs(PAYLOADS, prefix=f"job/{job_id}/")]
        finally:
            await store.close()

    return asyncio.run(names())


def test_summarize_container_on_azure(azure, client):
    job = submit(client, "summarize_container", container_name=DATA)
    assert job["status"] == "completed", job
    result = job["result"]
    assert result["job_type"] == "summarize_container" and result["container_name"] == DATA
    check_summary(result, azure.blobs)
    assert result["scanned"] == len(azure.blobs) and result["truncated"] is False
    # The summary is over the 1 KiB threshold: stored as a blob, yet the
    # aggregator (and so the job's result) saw the real value.
    [(_, _, _, _, stored)] = tasks(azure.stack, job["job_id"])
    assert is_reference(stored)
    assert [n.split("/")[2:6] for n in payload_blobs(azure, job["job_id"])] == [
        ["stage", "1", "task", "0"]
    ]


def test_summarize_container_filters(azure, client):
    def matching(blob: Blob) -> bool:
        return (
            blob.name.startswith("imagery/")
            and blob.extension in (".tif", ".png", ".csv")
            and 0.01 * MIB <= blob.size <= 1.5 * MIB
        )

    job = submit(
        client,
        "summarize_container",
        container_name=DATA,
        prefix="imagery/",
        extensions=["TIF", "png", ".csv"],
        min_size_mb=0.01,
        max_size_mb=1.5,
    )
    assert job["status"] == "completed", job
    expected = [b for b in azure.blobs if matching(b)]
    assert 0 < len(expected) < len([b for b in azure.blobs if b.name.startswith("imagery/")])
    check_summary(job["result"], expected)
    assert job["result"]["scanned"] == len(
        [b for b in azure.blobs if b.name.startswith("imagery/")]
    )

    limited = submit(client, "summarize_container", container_name=DATA, file_limit=5)
    assert limited["result"]["file_count"] == 5 and limited["result"]["truncated"] is True
    check_summary(limited["result"], azure.blobs[:5])  # the listing is in name order


def test_summarize_container_by_modification_time(azure, client):
    after = submit(
        client,
        "summarize_container",
        container_name=DATA,
        modified_after=azure.boundary.isoformat(),
    )
    check_summary(after["result"], sorted(azure.late.values(), key=lambda b: b.name))
    before = submit(
        client,
        "summarize_container",
        container_name=DATA,
        modified_before=(azure.boundary + dt.timedelta(microseconds=1)).isoformat(),
    )
    check_summary(before["result"], sorted(azure.early.values(), key=lambda b: b.name))


def test_list_container_contents_on_azure(azure, client):
    job = submit(client, "list_container_contents", container_name=DATA)
    assert job["status"] == "completed", job
    result = job["result"]
    check_summary(result, azure.blobs)
    assert result["analyzed"] == len(azure.blobs) and result["missing"] == 0
    assert [s["task_count"] for s in job["stages"]] == [1, len(azure.blobs), 1]
    # The job's result is a summary, not the inventory.
    assert "blob_names" not in result and len(str(result)) < 16_000

    rows = tasks(azure.stack, job["job_id"])
    listing, analyses, [fan_in] = rows[:1], rows[1:-1], rows[-1:]
    # Stage 1's list of names was over the threshold: stage 2 was planned from the blob.
    assert is_reference(listing[0][4])
    assert len(analyses) == len(azure.blobs)
    assert all(is_reference(r[4]) for r in analyses)  # each analysis carries a large note
    # The fan-in task's parameters carry none of the 48 large results: its
    # handler got them from the worker (fetched from the state service, each
    # claim-checked one unwrapped), and summarized them all (checked above).
    assert "previous_results" not in fan_in[3]


def test_list_container_contents_with_filters_on_azure(azure, client):
    def matching(blob: Blob) -> bool:
        return blob.extension in (".tif", ".json", ".csv") and blob.modified > azure.boundary

    job = submit(
        client,
        "list_container_contents",
        container_name=DATA,
        extensions=[".tif", "JSON", "csv"],
        modified_after=azure.boundary.isoformat(),
        file_limit=5,
    )
    assert job["status"] == "completed", job
    expected = [b for b in azure.blobs if matching(b)]
    assert len(expected) > 5  # so that file_limit cuts the listing
    check_summary(job["result"], expected[:5])
    rows = tasks(azure.stack, job["job_id"])
    assert [r[0] for r in rows] == [1, 2, 2, 2, 2, 2, 3]
    assert all(is_reference(r[4]) for r in rows if r[0] == 2)
    # The fan-in task's parameters stay small (the results reach its handler
    # from the worker), so they travel inline.
    assert rows[-1][3] == {"container_name": DATA}


def test_large_results_are_claim_checked_between_stages(azure, client):
    message = "m" * 1000
    job = submit(client, "hello_world", n=3, message=message)
    assert job["status"] == "completed", job
    # Reply i answered greeting i: stage 2 and the aggregator saw the real values.
    assert job["result"]["replies"] == [f"Replying to: {message} from task {i}!" for i in range(3)]
    rows = tasks(azure.stack, job["job_id"])
    assert all(is_reference(r[4]) for r in rows)  # every result was over 1 KiB
    assert all(is_reference(r[3]) for r in rows)  # the message made every parameter large too
    written = sorted("/".join(n.split("/")[2:7]) for n in payload_blobs(azure, job["job_id"]))
    assert written == sorted(
        f"stage/{stage}/task/{i}/{kind}"
        for stage in (1, 2)
        for i in range(3)
        for kind in ("parameters", "result")
    )


def test_a_missing_container_fails_the_job_naming_it(azure, client):
    job = submit(client, "summarize_container", container_name="no-such-container")
    assert job["status"] == "failed"
    assert "no-such-container" in job["error"] and "does not exist" in job["error"]


def test_container_parameters_are_validated(azure, client):
    for body, field in [
        ({}, "container_name"),
        ({"container_name": "Bad_Name"}, "container_name"),
        ({"container_name": DATA, "file_limit": 10_001}, "file_limit"),
    ]:
        response = client.post("/api/jobs/submit/list_container_contents", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith(f"{field}:")


# -- local directory store ---------------------------------------------------

EARLY = dt.datetime(2024, 1, 10, tzinfo=dt.UTC)
LATE = dt.datetime(2024, 3, 10, tzinfo=dt.UTC)


def test_list_container_contents_on_the_local_store(admin_url, tmp_path):
    root = tmp_path / "blobs"
    specs = blob_specs(24)
    blobs = asyncio.run(upload(LocalBlobStore(root), DATA, specs))
    # The local store reports file modification times: give half the blobs an older one.
    dated = {}
    for i, name in enumerate(sorted(blobs)):
        when = EARLY if i % 2 else LATE
        os.utime(root / DATA / name, (when.timestamp(), when.timestamp()))
        dated[name] = Blob(name, blobs[name].size, when)
    stack, url = make_stack(
        admin_url,
        tmp_path,
        extra_env={"BLOB_STORE": "local", "BLOB_LOCAL_ROOT": str(root)},
    )
    stack.up()
    try:
        with httpx.Client(
            base_url=stack.http_url, timeout=30, headers=auth_headers(stack.api_key)
        ) as client:
            job = submit(client, "list_container_contents", container_name=DATA)
            assert job["status"] == "completed", job
            check_summary(job["result"], sorted(dated.values(), key=lambda b: b.name))

            filtered = submit(
                client,
                "list_container_contents",
                container_name=DATA,
                extensions=["tif", "txt"],
                modified_after="2024-02-01T00:00:00Z",
            )
            expected = [
                b
                for b in sorted(dated.values(), key=lambda b: b.name)
                if b.extension in (".tif", ".txt") and b.modified == LATE
            ]
            assert expected and len(expected) < len(dated)
            check_summary(filtered["result"], expected)
            rows = tasks(stack, filtered["job_id"])
            analyzed = {r[4]["blob_name"]: r[4] for r in rows if r[0] == 2}
            assert sorted(analyzed) == [b.name for b in expected]
            for blob in expected:
                analysis = analyzed[blob.name]
                assert analysis["size_bytes"] == blob.size
                assert dt.datetime.fromisoformat(analysis["last_modified"]) == LATE
                assert analysis["metadata"] == {"origin": "e2e", "note": NOTE}
                assert analysis["content_type"] == CONTENT_TYPES.get(
                    blob.extension, "application/octet-stream"
                )
        # Under the default threshold nothing needed a claim check.
        assert not (root / "coremachine-payloads").exists()
    finally:
        codes = stack.stop()
        drop_database(admin_url, url)
    assert all(code == 0 for code in codes.values()), f"unclean exit codes: {codes}"
