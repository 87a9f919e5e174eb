"""Backpressure: when the database is saturated, submits are refused at once
(503 with Retry-After, RESOURCE_EXHAUSTED inside) instead of queueing
without bound behind it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from coremachine.stack.processes import Stack
from tests.databases import drop_database
from tests.e2e.conftest import auth_headers, make_stack

pytestmark = pytest.mark.e2e

BURST = 40


@pytest.fixture
def small_pool_stack(admin_url, tmp_path) -> Iterator[Stack]:
    stack, url = make_stack(
        admin_url,
        tmp_path,
        service_env={
            "state": {
                "STATE_POOL_MAX_SIZE": "2",
                "STATE_POOL_MAX_WAITING": "4",
                # Waiters stay waiting until the test lets them through.
                "STATE_POOL_TIMEOUT_SECONDS": "60",
            }
        },
    )
    stack.up()
    yield stack
    stack.stop()
    drop_database(admin_url, url)


async def burst(stack: Stack, answers: list[tuple[int, str | None, str | None]]) -> None:
    """BURST concurrent submits; each answer is appended as it arrives."""

    async def one(client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/api/jobs/submit/hello_world", json={"n": 1, "message": uuid.uuid4().hex}
        )
        error = r.json().get("error") if r.status_code >= 400 else None
        answers.append((r.status_code, r.headers.get("retry-after"), error))

    async with httpx.AsyncClient(
        base_url=stack.http_url, timeout=120, headers=auth_headers(stack.api_key)
    ) as client:
        await asyncio.gather(*(one(client) for _ in range(BURST)))


async def test_submits_are_refused_at_once_while_the_database_is_saturated(small_pool_stack):
    stack = small_pool_stack
    answers: list[tuple[int, str | None, str | None]] = []
    # Every job insert now waits for this lock: the state service's two
    # pooled connections fill up, then its four waiting places.
    async with await psycopg.AsyncConnection.connect(stack.database_url) as blocker:
        await blocker.execute("LOCK TABLE coremachine.jobs IN ACCESS EXCLUSIVE MODE")
        sending = asyncio.create_task(burst(stack, answers))
        deadline = asyncio.get_running_loop().time() + 60
        # All but the 2 + 4 requests the pool holds are answered while the
        # database is still blocked: nothing queues behind it.
        while len(answers) < BURST - 6:
            assert not sending.done()
            assert asyncio.get_running_loop().time() < deadline, f"only {answers} while saturated"
            await asyncio.sleep(0.05)
        early = list(answers)
        await blocker.rollback()
    await sending
    # Refused because the pool's queue was full (RESOURCE_EXHAUSTED inside),
    # not after waiting for a deadline.
    assert all(
        code == 503 and error == "Overloaded" and retry is not None and int(retry) > 0
        for code, retry, error in early
    ), early
    # Those that waited are served once it is free; no other 5xx than 503.
    assert {code for code, _, _ in answers} <= {202, 503}, answers
    assert sum(code == 202 for code, _, _ in answers) >= 1
