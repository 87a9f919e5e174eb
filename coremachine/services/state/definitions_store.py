"""Which orchestrators serve which job-type definitions, and the jobs waiting for one.

A job records the fingerprint of the definition it was created with; its
jobs-queue messages carry it. An orchestrator that receives a message for a
definition it does not serve hands it here: it is sent on when a live
orchestrator serves the definition, else parked (the job shows why it
waits) until one registers. Never dead-lettered: a rolling deploy that
takes a while must not fail the jobs that started before it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.events import NewEvent, append_events
from coremachine.services.state.job_traces import publishing
from coremachine.services.state.locks import lock_job
from coremachine.services.state.outbox import Outbox
from coremachine.services.state.rows import JobRow
from coremachine.services.state.sql import Q
from coremachine.shared.domain.jobs import JobTypeDefinition
from coremachine.shared.domain.statuses import JobStatus
from coremachine.shared.errors import Conflict, InvalidArgument
from coremachine.shared.messages import job_message_adapter
from coremachine.shared.pg_json import records

# A message sent on to another orchestrator waits this long first, so that
# orchestrators of different versions do not bounce it back and forth hot.
RESEND_DELAY_SECONDS = 0.5


def waiting_reason(job_type: str, definition: str) -> str:
    return (
        f"no running orchestrator serves the definition this job started with"
        f" ({job_type}@{definition[:12]}): it proceeds when one does, or when an operator"
        " resubmits it onto the current definition"
    )


class DefinitionStore:
    def __init__(
        self,
        pool: AsyncConnectionPool,
        outbox: Outbox,
        on_outbox_written: Callable[[], None] = lambda: None,
    ) -> None:
        self.pool = pool
        self.outbox = outbox
        self._poke_relay = on_outbox_written

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    async def register_orchestrator(
        self,
        orchestrator_id: str,
        host: str,
        version: str,
        definitions: Sequence[JobTypeDefinition],
        ttl_seconds: int,
        stopping: bool,
    ) -> int:
        """Records the registration; sends on the parked messages it serves."""
        if stopping:
            async with self.pool.connection() as conn:
                await conn.execute(Q.unregister_orchestrator, {"orchestrator_id": orchestrator_id})
            return 0
        fingerprints = sorted({d.fingerprint for d in definitions})
        async with self._transaction() as conn:
            await conn.execute(
                Q.register_orchestrator,
                {
                    "orchestrator_id": orchestrator_id,
                    "host": host,
                    "version": version,
                    "definitions": fingerprints,
                    "ttl_seconds": ttl_seconds,
                },
            )
            if definitions:
                await conn.execute(
                    Q.record_definitions,
                    {
                        "definitions": records(
                            {
                                "job_type": d.job_type,
                                "fingerprint": d.fingerprint,
                                "parameters_schema": d.parameters_schema,
                                "definition": d.definition,
                            }
                            for d in definitions
                        )
                    },
                )
            cur = await conn.execute(Q.release_parked_for, {"definitions": fingerprints})
            released = await cur.fetchall()
            await self._send_on(conn, released)
        if released:
            self._poke_relay()
        return len(released)

    async def park(
        self,
        job_id: str,
        job_type: str,
        definition: str,
        message_id: str,
        body: bytes,
    ) -> tuple[bool, str]:
        """(True, reason) when parked; (False, "") when sent on to a live server."""
        if not definition:
            raise InvalidArgument("definition is required", "definition")
        async with self._transaction() as conn:
            job = await lock_job(conn, job_id)
            if JobStatus(job.status).is_terminal:
                return True, f"job {job_id} is {job.status}: the message is dropped"
            cur = await conn.execute(Q.definition_served, {"definition": definition})
            row = await cur.fetchone()
            if row is not None and row[0]:
                with publishing(job.trace_context, self.outbox.jobs_queue, 1) as trace:
                    await self.outbox.write(
                        conn,
                        [
                            self.outbox.resend(
                                message_id, body, job_id, RESEND_DELAY_SECONDS, trace=trace
                            )
                        ],
                    )
                parked = False
                reason = ""
            else:
                reason = waiting_reason(job_type, definition)
                await conn.execute(
                    Q.park_message,
                    {
                        "message_id": message_id,
                        "job_id": job_id,
                        "job_type": job_type,
                        "definition": definition,
                        "body": body,
                        "reason": reason,
                    },
                )
                cur = await conn.execute(
                    Q.set_job_waiting, {"job_ids": [job_id], "waiting": reason}
                )
                if await cur.fetchone() is not None:
                    await append_events(
                        conn,
                        [NewEvent(job_id, "job_waiting", data={"reason": reason})],
                    )
                parked = True
        if not parked:
            self._poke_relay()
        return parked, reason

    async def rebase(
        self, job_id: str, definition: str, total_stages: int, default_result: bool
    ) -> tuple[JobRow, int]:
        """Moves a job onto another definition; its parked messages go on with it."""
        if not definition:
            raise InvalidArgument("definition is required", "definition")
        async with self._transaction() as conn:
            job = await lock_job(conn, job_id)
            if job.status in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS):
                raise Conflict(f"job {job_id} is {job.status}: it needs no definition any more")
            if job.stage > total_stages:
                raise Conflict(
                    f"job {job_id} is at stage {job.stage}; that definition has {total_stages}"
                )
            cur = conn.cursor(row_factory=class_row(JobRow))
            await cur.execute(
                Q.rebase_job,
                {
                    "job_id": job_id,
                    "definition": definition,
                    "total_stages": total_stages,
                    "default_result": default_result,
                },
            )
            rebased = await cur.fetchone()
            assert rebased is not None
            cur2 = await conn.execute(Q.release_parked_of_job, {"job_id": job_id})
            parked = await cur2.fetchall()
            await self._send_on(
                conn,
                [(m, j, _with_definition(bytes(b), definition), t) for m, j, b, t in parked],
            )
            await append_events(
                conn,
                [
                    NewEvent(
                        job_id,
                        "job_rebased",
                        data={"from": job.definition, "to": definition, "released": len(parked)},
                    )
                ],
            )
        if parked:
            self._poke_relay()
        return rebased, len(parked)

    async def _send_on(
        self, conn: psycopg.AsyncConnection[Any], released: Sequence[tuple[str, str, Any, Any]]
    ) -> None:
        """Sends released parked messages on, each continuing its job's trace."""
        if not released:
            return
        messages = []
        for message_id, job_id, body, trace_context in released:
            with publishing(trace_context, self.outbox.jobs_queue, 1) as trace:
                messages.append(self.outbox.resend(message_id, bytes(body), job_id, trace=trace))
        await self.outbox.write(conn, messages)
        job_ids = sorted({job_id for _, job_id, _, _ in released})
        # Key order, as every writer of jobs rows locks them (see locks.py).
        await conn.execute(Q.lock_jobs, {"job_ids": job_ids})
        cur = await conn.execute(Q.set_job_waiting, {"job_ids": job_ids, "waiting": None})
        resumed = [row[0] for row in await cur.fetchall()]
        await append_events(conn, [NewEvent(j, "job_resumed") for j in resumed])


def _with_definition(body: bytes, definition: str) -> bytes:
    """A parked jobs-queue message, now for another definition."""
    message = job_message_adapter.validate_json(body)
    return message.model_copy(update={"definition": definition}).model_dump_json().encode()
