"""Client: the blocking API, a thin facade over AsyncClient.

The calls run on a private event loop in a daemon thread, so there is one
implementation of paging, resuming watches and waiting, and the blocking client
works even when the caller's thread already runs an event loop (notebooks).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from coremachine_sdk._async_client import AsyncClient
from coremachine_sdk._channel import DEFAULT_ADDRESS, TlsOptions
from coremachine_sdk._models import (
    Diagnosis,
    Job,
    JobEvent,
    JobStatus,
    JobType,
    Task,
    TaskStatus,
    Worker,
)

T = TypeVar("T")


class _LoopThread:
    """An event loop in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="coremachine-sdk", daemon=True
                )
                self._thread.start()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._running_loop())
        try:
            return future.result()
        except BaseException:
            # Ctrl-C (or any interruption) in the caller cancels the call too.
            future.cancel()
            raise

    def iterate(self, source: AsyncIterator[T]) -> Iterator[T]:
        async def next_item() -> tuple[bool, T | None]:
            try:
                return True, await anext(source)
            except StopAsyncIteration:
                return False, None

        try:
            while True:
                more, item = self.run(next_item())
                if not more:
                    return
                yield item  # type: ignore[misc]
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None and self._loop is not None and not self._loop.is_closed():
                self.run(aclose())

    @property
    def started(self) -> bool:
        return self._loop is not None

    def stop(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


class Client:
    """A blocking client of CoreMachine's public gRPC API (use `with`)."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        api_key: str | None = None,
        tls: bool | TlsOptions = False,
        timeout: float = 30.0,
    ) -> None:
        self._async = AsyncClient(address, api_key, tls, timeout)
        self._runner = _LoopThread()

    @property
    def address(self) -> str:
        """The gateway address this client talks to."""
        return self._async.address

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection and stops the client's background thread."""
        if self._runner.started:
            self._runner.run(self._async.close())
            self._runner.stop()

    def submit(self, job_type: str, /, **parameters: Any) -> Job:
        """Submits a job; the same type and parameters return the existing job."""
        return self._runner.run(self._async.submit(job_type, **parameters))

    def get(self, job_id: str) -> Job:
        """Returns a job with its per-stage progress and, when finished, its result."""
        return self._runner.run(self._async.get(job_id))

    def list_jobs(
        self,
        status: JobStatus | str | None = None,
        job_type: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Job]:
        """Iterates over jobs, newest first, fetching pages as needed (at most `limit`)."""
        return self._runner.iterate(self._async.list_jobs(status, job_type, limit))

    def list_tasks(
        self,
        job_id: str,
        stage: int | None = None,
        status: TaskStatus | str | None = None,
        limit: int | None = None,
    ) -> Iterator[Task]:
        """Iterates over a job's tasks by stage and index, fetching pages as needed."""
        return self._runner.iterate(self._async.list_tasks(job_id, stage, status, limit))

    def cancel(self, job_id: str) -> Job:
        """Cancels a job: unfinished tasks are cancelled and no new task starts."""
        return self._runner.run(self._async.cancel(job_id))

    def resubmit(self, job_id: str, *, current_definition: bool = False) -> Job:
        """Re-runs a failed or cancelled job's failed and cancelled tasks (with
        current_definition: first moves the job onto its type's current definition)."""
        return self._runner.run(self._async.resubmit(job_id, current_definition=current_definition))

    def workers(self, include_gone_seconds: int = 0) -> list[Worker]:
        """The workers: live ones, and those stopped or lost recently (0: within an hour)."""
        return self._runner.run(self._async.workers(include_gone_seconds))

    def diagnose(self, job_id: str) -> Diagnosis:
        """What holds a job that is not terminal, in words and structured details."""
        return self._runner.run(self._async.diagnose(job_id))

    def job_types(self) -> list[JobType]:
        """The job types the server runs, with their parameter schemas."""
        return self._runner.run(self._async.job_types())

    def watch(
        self,
        job_id: str,
        after_seq: int = 0,
        *,
        reconnect_for: float = 30.0,
        task_events: bool = True,
    ) -> Iterator[JobEvent]:
        """Yields a job's events after `after_seq` until the job ends (resuming broken streams)."""
        return self._runner.iterate(
            self._async.watch(
                job_id, after_seq, reconnect_for=reconnect_for, task_events=task_events
            )
        )

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Waits until the job ends and returns it; raises Timeout after `timeout` seconds."""
        return self._runner.run(self._async.wait(job_id, timeout))
