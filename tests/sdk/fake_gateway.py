"""An in-process fake of the gateway's public JobService, for the SDK's unit tests.

The fake runs a real grpc.aio server on a free port, on its own event loop in a
thread: the blocking Client (and the CLI) block the test's thread, so the
server cannot share it. All fake state is touched only on the server's loop;
tests change it through `FakeGateway.call`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import grpc
from google.protobuf import struct_pb2

from coremachine.common.v1 import common_pb2
from coremachine.jobs.v1 import jobs_pb2, jobs_pb2_grpc

T = TypeVar("T")

JS = common_pb2.JobStatus
TS = common_pb2.TaskStatus
TERMINAL = {JS.JOB_STATUS_COMPLETED, JS.JOB_STATUS_FAILED, JS.JOB_STATUS_CANCELLED}


def job_id_for(job_type: str, parameters: dict[str, Any]) -> str:
    return hashlib.sha256(
        f"{job_type}:{json.dumps(parameters, sort_keys=True)}".encode()
    ).hexdigest()


class FakeJobService(jobs_pb2_grpc.JobServiceServicer):
    """Jobs in dictionaries; knobs to break streams, demand keys or drop RPCs."""

    def __init__(self) -> None:
        self.jobs: dict[str, jobs_pb2.Job] = {}
        self.tasks: dict[str, list[jobs_pb2.Task]] = {}
        self.events: dict[str, list[jobs_pb2.JobEvent]] = {}
        self.changed = asyncio.Event()
        self.api_key: str | None = None  # when set, calls must carry it
        self.admin_only: set[str] = set()  # methods that answer PERMISSION_DENIED
        self.unimplemented: set[str] = set()
        self.page_size = 3
        self.break_watch_after: int | None = None  # abort the next stream after N events
        self.break_quiet_watches: int = 0  # abort this many streams when they go quiet
        self.quiet_seconds = 0.0  # ... after this long without an event
        self.watch_requests: list[int] = []  # after_seq of every WatchJob call
        self.calls: list[tuple[str, dict[str, str]]] = []  # method, metadata

    # --- test helpers (run on the server loop) -------------------------------------------

    def add_job(
        self, job_type: str, parameters: dict[str, Any], status: int = JS.JOB_STATUS_QUEUED
    ) -> jobs_pb2.Job:
        job_id = job_id_for(job_type, parameters)
        params = struct_pb2.Struct()
        params.update(parameters)
        n = int(parameters.get("n", 2))
        job = jobs_pb2.Job(
            job_id=job_id,
            job_type=job_type,
            status=status,
            stage=1,
            total_stages=2,
            parameters=params,
            stages=[jobs_pb2.Stage(stage=1, status="running", task_count=n, remaining=n)],
        )
        job.created_at.GetCurrentTime()
        self.jobs[job_id] = job
        self.tasks[job_id] = [
            jobs_pb2.Task(
                task_id=f"{job_id[:8]}-s1-{i}",
                job_id=job_id,
                task_type="greet",
                stage=1,
                task_index=i,
                status=TS.TASK_STATUS_QUEUED,
                attempt=1,
            )
            for i in range(n)
        ]
        self.events[job_id] = []
        self.add_event(job_id, "job_created", 0, {"job_type": job_type})
        return job

    def add_event(self, job_id: str, event_type: str, stage: int, data: dict[str, Any]) -> None:
        events = self.events[job_id]
        event = jobs_pb2.JobEvent(seq=len(events) + 1, event_type=event_type, stage=stage)
        event.data.update(data)
        event.created_at.GetCurrentTime()
        events.append(event)
        self._wake()

    def finish(self, job_id: str, status: int = JS.JOB_STATUS_COMPLETED) -> None:
        job = self.jobs[job_id]
        job.status = status
        job.stage = job.total_stages
        for stage in job.stages:
            stage.remaining = 0
            stage.completed = stage.task_count
            stage.status = "completed"
        if status == JS.JOB_STATUS_COMPLETED:
            job.result.struct_value.update({"greetings": 2, "ratio": 0.5})
            job.completed_at.GetCurrentTime()
        else:
            job.error = "task greet[1] failed: boom"
        name = common_pb2.JobStatus.Name(status).removeprefix("JOB_STATUS_").lower()
        self.add_event(job_id, f"job_{name}", job.stage, {"status": name})

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    # --- the service -------------------------------------------------------------------------

    async def _check(self, method: str, context: grpc.aio.ServicerContext) -> None:
        metadata = {k: v for k, v in context.invocation_metadata() or ()}
        self.calls.append((method, metadata))
        if method in self.unimplemented:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
        if self.api_key is not None and metadata.get("authorization") != f"Bearer {self.api_key}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid API key")
        if method in self.admin_only:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{method} needs the admin role")

    async def _job(self, job_id: str, context: grpc.aio.ServicerContext) -> jobs_pb2.Job:
        job = self.jobs.get(job_id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {job_id} not found")
        return job

    async def SubmitJob(self, request, context):
        await self._check("SubmitJob", context)
        parameters = dict(request.parameters)
        if request.job_type != "hello_world":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"unknown job type {request.job_type!r}; known types: hello_world",
                trailing_metadata=(("coremachine-field", "job_type"),),
            )
        n = parameters.get("n", 2)
        if not isinstance(n, float) or n < 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "n: Input should be >= 1")
        parameters["n"] = int(n)
        job_id = job_id_for(request.job_type, parameters)
        created = job_id not in self.jobs
        job = self.add_job(request.job_type, parameters) if created else self.jobs[job_id]
        return jobs_pb2.SubmitJobResponse(job=job, created=created)

    async def GetJob(self, request, context):
        await self._check("GetJob", context)
        return jobs_pb2.GetJobResponse(job=await self._job(request.job_id, context))

    async def ListJobs(self, request, context):
        await self._check("ListJobs", context)
        jobs = [
            j
            for j in sorted(self.jobs.values(), key=lambda j: j.job_id)
            if (not request.status or j.status == request.status)
            and (not request.job_type or j.job_type == request.job_type)
        ]
        page, token = self._page(jobs, request.page_token, request.limit)
        return jobs_pb2.ListJobsResponse(jobs=page, next_page_token=token)

    async def ListTasks(self, request, context):
        await self._check("ListTasks", context)
        tasks = [
            t
            for t in self.tasks.get(request.job_id, [])
            if (not request.stage or t.stage == request.stage)
            and (not request.status or t.status == request.status)
        ]
        page, token = self._page(tasks, request.page_token, request.limit)
        return jobs_pb2.ListTasksResponse(tasks=page, next_page_token=token)

    def _page(self, items: list[T], token: str, limit: int) -> tuple[list[T], str]:
        # The server may return fewer items than asked: clients must follow the token.
        start = int(token or 0)
        end = start + min(limit or self.page_size, self.page_size)
        return items[start:end], (str(end) if end < len(items) else "")

    async def CancelJob(self, request, context):
        await self._check("CancelJob", context)
        job = await self._job(request.job_id, context)
        if job.status in TERMINAL:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "job already finished")
        self.finish(job.job_id, JS.JOB_STATUS_CANCELLED)
        return jobs_pb2.CancelJobResponse(job=job)

    async def ResubmitJob(self, request, context):
        await self._check("ResubmitJob", context)
        job = await self._job(request.job_id, context)
        job.status = JS.JOB_STATUS_PROCESSING
        job.error = ""
        self.add_event(job.job_id, "job_resubmitted", 1, {"tasks_requeued": 1})
        return jobs_pb2.ResubmitJobResponse(job=job, tasks_requeued=1)

    async def ListJobTypes(self, request, context):
        await self._check("ListJobTypes", context)
        schema = struct_pb2.Struct()
        schema.update({"type": "object", "properties": {"n": {"type": "integer"}}})
        return jobs_pb2.ListJobTypesResponse(
            job_types=[
                jobs_pb2.JobType(
                    job_type="hello_world",
                    description="Greets n times",
                    stages=["greet", "reply"],
                    parameters_schema=schema,
                )
            ]
        )

    async def WatchJob(self, request, context):
        await self._check("WatchJob", context)
        job = await self._job(request.job_id, context)
        self.watch_requests.append(request.after_seq)
        self._wake()
        sent, after = 0, request.after_seq
        while True:
            changed = self.changed
            for event in self.events[job.job_id][after:]:
                if self.break_watch_after is not None and sent >= self.break_watch_after:
                    self.break_watch_after = None
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
                yield jobs_pb2.WatchJobResponse(event=event)
                sent, after = sent + 1, event.seq
            if job.status in TERMINAL:
                if request.final_job:
                    yield jobs_pb2.WatchJobResponse(job=job)
                return
            if self.break_quiet_watches:
                try:
                    await asyncio.wait_for(changed.wait(), self.quiet_seconds)
                except TimeoutError:
                    self.break_quiet_watches -= 1
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "idle stream reset")
                continue
            await changed.wait()


class FakeGateway:
    """The fake service on a real grpc.aio server, on its own loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.service: FakeJobService
        self.server: grpc.aio.Server
        self.address = ""

    def start(self) -> None:
        self.thread.start()

        async def start() -> None:
            self.service = FakeJobService()
            self.server = grpc.aio.server()
            jobs_pb2_grpc.add_JobServiceServicer_to_server(self.service, self.server)
            port = self.server.add_insecure_port("127.0.0.1:0")
            await self.server.start()
            self.address = f"127.0.0.1:{port}"

        self._run(start())

    def stop(self) -> None:
        self._run(self.server.stop(None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs `fn(*args)` on the server's loop and returns its result."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=10)

    def wait_until(self, predicate: Callable[[FakeJobService], bool], timeout: float = 5) -> None:
        """Blocks until `predicate(service)` holds (evaluated on the server loop)."""
        deadline = time.monotonic() + timeout
        while not self.call(predicate, self.service):
            assert time.monotonic() < deadline, "condition not reached in time"
            time.sleep(0.01)


def running_gateway() -> Iterator[FakeGateway]:
    gateway = FakeGateway()
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()
