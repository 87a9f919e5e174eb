"""AsyncClient: the one implementation of the SDK's calls (Client wraps it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import grpc

from coremachine.jobs.v1 import jobs_pb2, jobs_pb2_grpc
from coremachine_sdk import _convert
from coremachine_sdk._channel import DEFAULT_ADDRESS, TlsOptions, auth_metadata, open_aio_channel
from coremachine_sdk._errors import CoreMachineError, Timeout, Unavailable, error_from_rpc
from coremachine_sdk._models import (
    Diagnosis,
    Job,
    JobEvent,
    JobStatus,
    JobType,
    Schedule,
    ScheduleFiring,
    Task,
    TaskStatus,
    Worker,
)

R = TypeVar("R")

# A watch stream that breaks with one of these is resumed after the last seen
# event; any other status (not found, auth, ...) is the caller's to handle.
# A watch stream that broke after at least this long had been working.
_WORKING_STREAM_SECONDS = 5.0
_RESUMABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
_PAGE_SIZE = 100


class AsyncClient:
    """An asyncio client of CoreMachine's public gRPC API (use `async with`)."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        api_key: str | None = None,
        tls: bool | TlsOptions = False,
        timeout: float = 30.0,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._tls = tls
        self._metadata = auth_metadata(api_key)
        # Opened on first use, inside the event loop that will run the calls.
        self._channel: grpc.aio.Channel | None = None
        self._stub: jobs_pb2_grpc.JobServiceStub | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the connection; the client may not be used afterwards."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None

    def _service(self) -> jobs_pb2_grpc.JobServiceStub:
        if self._stub is None:
            self._channel = open_aio_channel(self.address, self._tls)
            self._stub = jobs_pb2_grpc.JobServiceStub(self._channel)
        return self._stub

    async def _call(
        self, method: Callable[..., Awaitable[R]], request: Any, timeout: float | None = None
    ) -> R:
        try:
            return await method(request, metadata=self._metadata, timeout=timeout or self.timeout)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error) from error

    async def submit(self, job_type: str, /, **parameters: Any) -> Job:
        """Submits a job; the same type and parameters return the existing job."""
        request = jobs_pb2.SubmitJobRequest(
            job_type=job_type, parameters=_convert.parameters_to_struct(parameters)
        )
        response = await self._call(self._service().SubmitJob, request)
        return _convert.job_from_proto(response.job)

    async def submit_job(
        self,
        job_type: str,
        parameters: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        not_before: datetime | None = None,
    ) -> Job:
        """Submits a job with flow options: a priority (0..9, higher first) and
        a start time (the job waits, queued, until then)."""
        request = jobs_pb2.SubmitJobRequest(
            job_type=job_type,
            parameters=_convert.parameters_to_struct(parameters or {}),
            priority=priority,
        )
        if not_before is not None:
            request.not_before.CopyFrom(_convert.timestamp(not_before))
        response = await self._call(self._service().SubmitJob, request)
        return _convert.job_from_proto(response.job)

    # -- schedules -------------------------------------------------------------

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        """Creates a schedule (its parameters are validated now); Conflict if the name exists."""
        request = jobs_pb2.CreateScheduleRequest(schedule=_convert.schedule_to_proto(schedule))
        response = await self._call(self._service().CreateSchedule, request)
        return _convert.schedule_from_proto(response.schedule)

    async def get_schedule(self, name: str) -> Schedule:
        """One schedule, with its next tick."""
        response = await self._call(
            self._service().GetSchedule, jobs_pb2.GetScheduleRequest(name=name)
        )
        return _convert.schedule_from_proto(response.schedule)

    async def list_schedules(self, limit: int | None = None) -> AsyncIterator[Schedule]:
        """Iterates over the schedules by name, fetching pages as needed."""
        request = jobs_pb2.ListSchedulesRequest()
        async for proto in self._pages(self._service().ListSchedules, request, "schedules", limit):
            yield _convert.schedule_from_proto(proto)

    async def pause_schedule(self, name: str) -> Schedule:
        """Pauses a schedule: no tick fires until it is resumed."""
        response = await self._call(
            self._service().PauseSchedule, jobs_pb2.PauseScheduleRequest(name=name)
        )
        return _convert.schedule_from_proto(response.schedule)

    async def resume_schedule(self, name: str) -> Schedule:
        """Resumes a schedule from its next tick."""
        response = await self._call(
            self._service().ResumeSchedule, jobs_pb2.ResumeScheduleRequest(name=name)
        )
        return _convert.schedule_from_proto(response.schedule)

    async def delete_schedule(self, name: str) -> bool:
        """Deletes a schedule (its jobs stay); False if there was none."""
        response = await self._call(
            self._service().DeleteSchedule, jobs_pb2.DeleteScheduleRequest(name=name)
        )
        return response.deleted

    async def trigger_schedule(self, name: str) -> tuple[ScheduleFiring, Job | None]:
        """Fires a schedule now; returns the firing and its job."""
        response = await self._call(
            self._service().TriggerSchedule, jobs_pb2.TriggerScheduleRequest(name=name)
        )
        job = _convert.job_from_proto(response.job) if response.HasField("job") else None
        return _convert.firing_from_proto(response.firing), job

    async def schedule_firings(self, name: str, limit: int = 100) -> list[ScheduleFiring]:
        """A schedule's firings and missed ticks, newest first."""
        response = await self._call(
            self._service().ListScheduleFirings,
            jobs_pb2.ListScheduleFiringsRequest(name=name, limit=limit),
        )
        return [_convert.firing_from_proto(f) for f in response.firings]

    async def get(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Returns a job with its per-stage progress and, when finished, its result."""
        request = jobs_pb2.GetJobRequest(job_id=job_id)
        response = await self._call(self._service().GetJob, request, timeout)
        return _convert.job_from_proto(response.job)

    async def list_jobs(
        self,
        status: JobStatus | str | None = None,
        job_type: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Job]:
        """Iterates over jobs, newest first, fetching pages as needed (at most `limit`)."""
        request = jobs_pb2.ListJobsRequest(
            status=_convert.job_status_to_proto(status), job_type=job_type or ""
        )
        async for proto in self._pages(self._service().ListJobs, request, "jobs", limit):
            yield _convert.job_from_proto(proto)

    async def list_tasks(
        self,
        job_id: str,
        stage: int | None = None,
        status: TaskStatus | str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[Task]:
        """Iterates over a job's tasks by stage and index, fetching pages as needed."""
        request = jobs_pb2.ListTasksRequest(
            job_id=job_id, stage=stage or 0, status=_convert.task_status_to_proto(status)
        )
        async for proto in self._pages(self._service().ListTasks, request, "tasks", limit):
            yield _convert.task_from_proto(proto)

    async def _pages(
        self, method: Callable[..., Awaitable[Any]], request: Any, field: str, limit: int | None
    ) -> AsyncIterator[Any]:
        left = limit
        while left is None or left > 0:
            request.limit = _PAGE_SIZE if left is None else min(left, _PAGE_SIZE)
            response = await self._call(method, request)
            items = getattr(response, field)
            for item in items if left is None else items[:left]:
                yield item
            if left is not None:
                left -= len(items)
            if not response.next_page_token or not items:
                return
            request.page_token = response.next_page_token

    async def cancel(self, job_id: str) -> Job:
        """Cancels a job: unfinished tasks are cancelled and no new task starts."""
        response = await self._call(
            self._service().CancelJob, jobs_pb2.CancelJobRequest(job_id=job_id)
        )
        return _convert.job_from_proto(response.job)

    async def resubmit(self, job_id: str, *, current_definition: bool = False) -> Job:
        """Re-runs a failed or cancelled job's failed and cancelled tasks.

        With current_definition, first moves the job onto the definition of its type
        served now (for a job waiting for the one it started with).
        """
        response = await self._call(
            self._service().ResubmitJob,
            jobs_pb2.ResubmitJobRequest(job_id=job_id, current_definition=current_definition),
        )
        return _convert.job_from_proto(response.job)

    async def workers(self, include_gone_seconds: int = 0) -> list[Worker]:
        """The workers: live ones, and those stopped or lost recently (0: within an hour)."""
        response = await self._call(
            self._service().ListWorkers,
            jobs_pb2.ListWorkersRequest(include_gone_seconds=include_gone_seconds),
        )
        return [_convert.worker_from_proto(w) for w in response.workers]

    async def diagnose(self, job_id: str) -> Diagnosis:
        """What holds a job that is not terminal, in words and structured details."""
        response = await self._call(
            self._service().DiagnoseJob, jobs_pb2.DiagnoseJobRequest(job_id=job_id)
        )
        return _convert.diagnosis_from_proto(response.diagnosis)

    async def job_types(self) -> list[JobType]:
        """The job types the server runs, with their parameter schemas."""
        response = await self._call(self._service().ListJobTypes, jobs_pb2.ListJobTypesRequest())
        return [_convert.job_type_from_proto(t) for t in response.job_types]

    async def watch(
        self,
        job_id: str,
        after_seq: int = 0,
        *,
        reconnect_for: float = 30.0,
        task_events: bool = True,
    ) -> AsyncIterator[JobEvent]:
        """Yields a job's events after `after_seq` until the job ends.

        A broken stream is reopened after the last event seen, so no event is
        lost or repeated; when no working stream comes back for `reconnect_for`
        seconds it raises Unavailable. `task_events=False` leaves out the
        per-task events.
        """
        levels = {"job_level_only": not task_events}
        async for item in self._watch(job_id, after_seq, reconnect_for, levels, final_job=False):
            if isinstance(item, JobEvent):
                yield item

    async def _watch(
        self,
        job_id: str,
        after_seq: int,
        reconnect_for: float,
        levels: dict[str, bool],
        *,
        final_job: bool,
    ) -> AsyncIterator[JobEvent | Job]:
        """watch(); levels are WatchJobRequest's filters; with final_job, the
        job as it ended comes last (from servers that send it)."""
        loop = asyncio.get_running_loop()
        outage_since: float | None = None
        backoff = 0.1
        while True:
            attempt_at = loop.time()
            call = self._service().WatchJob(
                jobs_pb2.WatchJobRequest(
                    job_id=job_id, after_seq=after_seq, final_job=final_job, **levels
                ),
                metadata=self._metadata,
            )
            try:
                async for response in call:
                    if response.HasField("job"):
                        yield _convert.job_from_proto(response.job)
                        continue
                    event = _convert.event_from_proto(response.event)
                    after_seq = max(after_seq, event.seq)
                    outage_since, backoff = None, 0.1
                    yield event
                return  # the server ends the stream when the job is terminal
            except grpc.aio.AioRpcError as error:
                if error.code() not in _RESUMABLE:
                    raise error_from_rpc(error) from error
                now = loop.time()
                # A stream that stayed up for a while was working, even without
                # events (a long stage, or end_only): its break starts a new outage.
                if outage_since is None or now - attempt_at > _WORKING_STREAM_SECONDS:
                    outage_since = now
                if now - outage_since > reconnect_for:
                    raise Unavailable(
                        f"watch of {job_id} broken for {reconnect_for}s: {error.details()}",
                        error.code().name,
                    ) from error
            finally:
                call.cancel()
            await asyncio.sleep(backoff)  # back off before reconnecting
            backoff = min(backoff * 2, 2.0)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Waits until the job ends and returns it; raises Timeout after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        scope = asyncio.timeout_at(None if timeout is None else loop.time() + timeout)
        job: Job | None = None
        try:
            async with scope:
                try:
                    # Only the event that ends the job: a 100,000-task job's
                    # end is awaited without streaming its 200,000 task
                    # events; the stream's last message is the job as it ended.
                    levels = {"job_level_only": True, "end_only": True}
                    async for item in self._watch(job_id, 0, 30.0, levels, final_job=True):
                        if isinstance(item, Job) and item.is_terminal:
                            return item
                except CoreMachineError as exc:
                    # A gateway without WatchJob: fall back to polling.
                    if exc.code != "UNIMPLEMENTED":
                        raise
                # The stream ended without the job (an older gateway): ask for it.
                job = await self.get(job_id)
                while not job.is_terminal:
                    await asyncio.sleep(0.5)
                    job = await self.get(job_id)
                return job
        except TimeoutError:
            if not scope.expired():
                raise  # a call's own deadline, already a Timeout
            if job is None:
                # Waited on the stream only: one quick look for the message.
                with contextlib.suppress(CoreMachineError, TimeoutError):
                    job = await asyncio.wait_for(self.get(job_id), 5.0)
            status = job.status if job is not None else "unknown"
            raise Timeout(f"job {job_id} still {status} after {timeout}s") from None
