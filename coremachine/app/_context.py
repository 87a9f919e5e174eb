"""What a task handler receives besides its parameters: `TaskContext`.

The worker builds one per attempt. Everything on it is safe to use from a
sync handler (which runs in a thread) as well as from an async one:
heartbeats and progress are recorded and sent by the worker in batches,
the cancellation signal is set by the worker when the job is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from coremachine.app._errors import PermanentError
from coremachine.app._stages import PreviousResult
from coremachine.shared.blobstore import BlobStore


class TaskRuntime(Protocol):
    """The worker's side of a context (not part of the public API)."""

    def heartbeat(self, task_id: str, details: Any) -> None: ...

    def progress(self, task_id: str, current: float, total: float | None, message: str) -> None: ...


class _NoRuntime:
    """For contexts made outside a worker (tests): records nothing."""

    def heartbeat(self, task_id: str, details: Any) -> None:
        pass

    def progress(self, task_id: str, current: float, total: float | None, message: str) -> None:
        pass


class CancelSignal:
    """Set once when the task's job is cancelled (or its lease is lost)."""

    def __init__(self) -> None:
        # The worker makes one per task, and most tasks never wait on it: a
        # threading.Event (a Condition and its lock) is made only for a sync
        # handler that blocks on the signal (py-spy: 4 % of the worker's CPU).
        self._set = False
        self._blocking: threading.Event | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._lock = threading.Lock()
        self.reason = ""

    def set(self, reason: str) -> None:
        with self._lock:
            if self._set:
                return
            self.reason = reason
            self._set = True
            waiters, self._waiters = self._waiters, []
            blocking = self._blocking
        if blocking is not None:
            blocking.set()
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(event.set)

    def is_set(self) -> bool:
        return self._set

    async def wait(self, timeout: float | None) -> bool:
        event = asyncio.Event()
        with self._lock:
            if self._set:
                return True
            self._waiters.append((asyncio.get_running_loop(), event))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self._set

    def wait_blocking(self, timeout: float | None) -> bool:
        with self._lock:
            if self._set:
                return True
            if self._blocking is None:
                self._blocking = threading.Event()
            blocking = self._blocking
        return blocking.wait(timeout)


class _TaskLogger(logging.LoggerAdapter[logging.Logger]):
    """Adds the task's ids to every record (as the JSON log formatter's fields)."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        fields = {**(self.extra or {}), **extra.get("fields", {})}
        kwargs["extra"] = {**extra, "fields": fields}
        return msg, kwargs


@dataclass(eq=False)
class TaskContext:
    """The task being run: its ids, attempt, blob store and signals."""

    job_id: str
    task_id: str
    job_type: str
    task_type: str
    stage: int
    task_index: int
    attempt: int
    queue: str
    # The worker's blob store (BLOB_STORE): the same handler runs on the local
    # directory and on Azure Blob Storage.
    blobs: BlobStore
    _previous: Sequence[PreviousResult] | None = None
    _runtime: TaskRuntime = field(default_factory=_NoRuntime)
    _cancel: CancelSignal = field(default_factory=CancelSignal)
    _logger: logging.LoggerAdapter[logging.Logger] | None = None

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry job_id, task_id, stage and attempt."""
        if self._logger is None:
            self._logger = _TaskLogger(
                logging.getLogger(f"coremachine.task.{self.task_type}"),
                {
                    "job_id": self.job_id,
                    "task_id": self.task_id,
                    "stage": self.stage,
                    "attempt": self.attempt,
                },
            )
        return self._logger

    @property
    def previous_results(self) -> Sequence[PreviousResult]:
        """The previous stage's results by task index (stages with
        previous_results=True, and FanIn stages)."""
        if self._previous is None:
            # Permanent: a code or definition error that no retry fixes.
            raise PermanentError(
                f"stage {self.stage} of {self.job_type} did not ask for the previous stage's"
                " results: declare it with Stage(..., previous_results=True) or FanIn()"
            )
        return self._previous

    def heartbeat(self, details: Any = None) -> None:
        """Says the task is alive (needed by stages with a heartbeat_timeout)."""
        self._runtime.heartbeat(self.task_id, details)

    def progress(self, current: float, total: float | None = None, message: str = "") -> None:
        """Reports progress; it shows in the job's status and events (sent at
        most about once a second per task, the latest report wins)."""
        self._runtime.heartbeat(self.task_id, None)
        self._runtime.progress(self.task_id, float(current), total, message[:500])

    @property
    def is_cancelled(self) -> bool:
        """True once the job was cancelled: stop soon (the outcome is ignored)."""
        return self._cancel.is_set()

    async def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Waits until the job is cancelled (True) or the timeout passes (False)."""
        return await self._cancel.wait(timeout)

    def wait_cancelled_blocking(self, timeout: float | None = None) -> bool:
        """wait_cancelled for sync handlers (blocks the handler's thread)."""
        return self._cancel.wait_blocking(timeout)
