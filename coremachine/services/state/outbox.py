"""The transactional outbox: messages written with the state change that
implies them, and the relay that publishes them to the broker.

The relay locks a batch (FOR UPDATE SKIP LOCKED, so several state replicas
share the work), sends it, and deletes it in the same transaction. A crash
between send and commit re-sends the batch: message ids are deterministic and
consumers idempotent, so a duplicate is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence

import psycopg
from opentelemetry.trace import SpanKind
from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.sql import Q
from coremachine.shared import tracing
from coremachine.shared.broker import Broker, OutgoingMessage
from coremachine.shared.brokers.postgres import enqueue_in_transaction
from coremachine.shared.messages import FinalizeJob, JobContext, StageReady, TaskMessage

log = logging.getLogger(__name__)


class Outbox:
    """Writes the messages a state change implies, inside its transaction.

    Relay mode (any broker): rows in coremachine.outbox, published by the
    relay. Direct mode (the PostgreSQL queue in the same database): the
    messages go straight into the queue table in the same transaction, which
    gives the same guarantee without the relay's extra hop.
    """

    def __init__(self, jobs_queue: str, tasks_queue: str, direct: bool = False) -> None:
        self.jobs_queue = jobs_queue
        self.tasks_queue = tasks_queue
        self.direct = direct

    async def write(
        self, conn: psycopg.AsyncConnection, items: Sequence[tuple[str, OutgoingMessage]]
    ) -> None:
        if not items:
            return
        if self.direct:
            by_queue: dict[str, list[OutgoingMessage]] = defaultdict(list)
            for queue, message in items:
                by_queue[queue].append(message)
            for queue, messages in by_queue.items():
                await enqueue_in_transaction(conn, queue, messages)
            return
        await conn.execute(
            Q.insert_outbox,
            {
                "queues": [queue for queue, _ in items],
                "message_ids": [m.message_id for _, m in items],
                "bodies": [m.body for _, m in items],
                "properties": [json.dumps(dict(m.properties)) for _, m in items],
                "scheduled": [m.scheduled_at for _, m in items],
            },
        )

    def stage_ready(
        self,
        job_id: str,
        job_type: str,
        stage: int,
        context: JobContext | None = None,
        *,
        definition: str,
        trace: Mapping[str, str] | None = None,
    ) -> tuple[str, OutgoingMessage]:
        msg = StageReady(
            job_id=job_id, job_type=job_type, stage=stage, context=context, definition=definition
        )
        return self.jobs_queue, _outgoing(
            msg.message_id, msg.model_dump_json(), trace=trace, job_id=job_id
        )

    def finalize(
        self,
        job_id: str,
        job_type: str,
        context: JobContext | None = None,
        *,
        definition: str,
        trace: Mapping[str, str] | None = None,
    ) -> tuple[str, OutgoingMessage]:
        msg = FinalizeJob(job_id=job_id, job_type=job_type, context=context, definition=definition)
        return self.jobs_queue, _outgoing(
            msg.message_id, msg.model_dump_json(), trace=trace, job_id=job_id
        )

    def resend(
        self,
        message_id: str,
        body: bytes,
        job_id: str,
        delay_seconds: float = 0.0,
        trace: Mapping[str, str] | None = None,
    ) -> tuple[str, OutgoingMessage]:
        """A jobs-queue message sent again (a parked one, released): under a new
        id, since Service Bus drops a repeated id within its duplicate window."""
        scheduled = (
            dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay_seconds) if delay_seconds else None
        )
        again = f"{message_id.split(':again:')[0]}:again:{uuid.uuid4().hex[:12]}"
        properties = {**(trace or {}), "job_id": job_id}
        return self.jobs_queue, OutgoingMessage(again, body, properties, scheduled)

    def task(
        self,
        task_id: str,
        job_id: str,
        task_type: str,
        attempt: int,
        scheduled_at: dt.datetime | None = None,
        *,
        queue: str | None = None,
        trace: Mapping[str, str] | None = None,
    ) -> tuple[str, OutgoingMessage]:
        """A task's message, on its stage's queue (None: the TASKS_QUEUE)."""
        msg = TaskMessage(task_id=task_id, job_id=job_id, task_type=task_type, attempt=attempt)
        return queue or self.tasks_queue, _outgoing(
            msg.message_id,
            msg.model_dump_json(),
            scheduled_at,
            trace=trace,
            job_id=job_id,
            task_id=task_id,
        )


def _outgoing(
    message_id: str,
    body: str,
    scheduled_at=None,
    *,
    trace: Mapping[str, str] | None = None,
    **properties: str,
) -> OutgoingMessage:
    # `trace`: the W3C traceparent of the span that published it (shared/tracing.py).
    if trace:
        properties = {**trace, **properties}
    return OutgoingMessage(
        message_id=message_id, body=body.encode(), properties=properties, scheduled_at=scheduled_at
    )


class OutboxRelay:
    """Publishes outbox rows to the broker in batches."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        broker: Broker,
        batch_size: int = 500,
        idle_interval: float = 1.0,
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.batch_size = batch_size
        self.idle_interval = idle_interval
        self.wakeup = asyncio.Event()

    def notify(self) -> None:
        """Called after a commit that wrote outbox rows: relay without waiting."""
        self.wakeup.set()

    async def relay_once(self) -> int:
        """Publishes one batch; returns how many messages it sent."""
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(Q.lock_outbox_batch, {"limit": self.batch_size})
            rows = await cur.fetchall()
            if not rows:
                return 0
            by_queue: dict[str, list[OutgoingMessage]] = defaultdict(list)
            for _id, queue, message_id, body, properties, scheduled_at in rows:
                by_queue[queue].append(
                    OutgoingMessage(message_id, bytes(body), properties, scheduled_at)
                )
            for queue, messages in by_queue.items():
                # A batch of many jobs' messages: its own span, linked to each
                # message's publisher (the messages keep their trace context).
                with tracing.span(
                    f"send {queue}",
                    kind=SpanKind.PRODUCER,
                    attributes=tracing.messaging_attributes("send", queue, len(messages))
                    if tracing.enabled()
                    else None,
                    links=tracing.links_to(
                        [m.properties.get(tracing.TRACEPARENT) for m in messages]
                    )
                    if tracing.enabled()
                    else (),
                ):
                    await self.broker.send(queue, messages)
            await conn.execute(Q.delete_outbox, {"ids": [row[0] for row in rows]})
        return len(rows)

    async def run(self, stopping: asyncio.Event) -> None:
        """Relays until stopping is set; wakes on notify() or every idle_interval."""
        while not stopping.is_set():
            self.wakeup.clear()
            try:
                sent = await self.relay_once()
            except Exception:
                log.exception("outbox relay failed; retrying")
                sent = 0
                await _wait(stopping, self.idle_interval)
            if sent >= self.batch_size:
                continue  # more waiting: keep going without sleeping
            if sent == 0:
                await _wait_any(stopping, self.wakeup, self.idle_interval)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


async def _wait_any(a: asyncio.Event, b: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
