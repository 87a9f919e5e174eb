"""AsyncClient against the fake gateway (the blocking Client wraps the same code)."""

from __future__ import annotations

import asyncio

import pytest

from coremachine.common.v1 import common_pb2
from coremachine_sdk import AsyncClient, JobNotFound, JobStatus, Timeout
from tests.sdk.fake_gateway import FakeGateway

JS = common_pb2.JobStatus


async def test_async_client_end_to_end(gateway: FakeGateway):
    async with AsyncClient(gateway.address, api_key="k") as client:
        job = await client.submit("hello_world", n=4)
        assert job.status is JobStatus.QUEUED and job.parameters == {"n": 4}

        tasks = [t async for t in client.list_tasks(job.job_id)]
        assert len(tasks) == 4
        assert [j.job_id async for j in client.list_jobs(limit=1)] == [job.job_id]

        waiter = asyncio.create_task(client.wait(job.job_id, timeout=10))
        # Finish the job only once the waiter is subscribed, so wait() must use the stream.
        await asyncio.to_thread(gateway.wait_until, lambda s: bool(s.watch_requests))
        gateway.call(gateway.service.finish, job.job_id)
        final = await waiter
        assert final.status is JobStatus.COMPLETED and final.result["greetings"] == 2

        events = [e.event_type async for e in client.watch(job.job_id)]
        assert events == ["job_created", "job_completed"]

        with pytest.raises(JobNotFound):
            await client.get("f" * 64)
        other = await client.submit("hello_world", n=9)
        with pytest.raises(Timeout):
            await client.wait(other.job_id, timeout=0.2)
