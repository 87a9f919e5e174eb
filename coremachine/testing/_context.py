"""A TaskContext for calling a handler directly in a unit test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coremachine.app import PreviousResult, TaskContext
from coremachine.app._context import CancelSignal
from coremachine.shared.blobstore import BlobStore
from coremachine.shared.blobstores.memory import MemoryBlobStore


class RecordingRuntime:
    """Keeps what a handler reported, for assertions."""

    def __init__(self) -> None:
        self.heartbeats: list[Any] = []
        self.reports: list[tuple[float, float | None, str]] = []

    def heartbeat(self, task_id: str, details: Any) -> None:
        self.heartbeats.append(details)

    def progress(self, task_id: str, current: float, total: float | None, message: str) -> None:
        self.reports.append((current, total, message))


def task_context(
    *,
    job_id: str = "0" * 64,
    job_type: str = "test",
    task_type: str = "test",
    stage: int = 1,
    task_index: int = 0,
    attempt: int = 1,
    queue: str = "tasks",
    blobs: BlobStore | None = None,
    previous_results: Sequence[PreviousResult] | None = None,
    cancelled: bool = False,
    runtime: RecordingRuntime | None = None,
) -> TaskContext:
    """A context like the worker's, for `handler(params, task_context(...))` in a test.

    blobs defaults to an in-memory store; previous_results are what
    ctx.previous_results returns (None: the stage did not ask for them).
    runtime: pass a RecordingRuntime to assert on the heartbeats and progress
    the handler reported (`runtime.heartbeats`, `runtime.reports`).
    """
    cancel = CancelSignal()
    if cancelled:
        cancel.set("cancelled by the test")
    return TaskContext(
        job_id=job_id,
        task_id=f"{job_id}-s{stage}-{task_index}",
        job_type=job_type,
        task_type=task_type,
        stage=stage,
        task_index=task_index,
        attempt=attempt,
        queue=queue,
        blobs=blobs if blobs is not None else MemoryBlobStore(),
        _previous=list(previous_results) if previous_results is not None else None,
        _runtime=runtime if runtime is not None else RecordingRuntime(),
        _cancel=cancel,
    )
