"""Operator operations of the state service: statistics, dependency checks,
dead letters (the poison monitor) and the development schema redeploy."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.schema import migrate_all
from coremachine.services.state.settings import StateSettings
from coremachine.services.state.sql import Q
from coremachine.services.state.store import StateStore
from coremachine.shared.broker import Broker, DeadLetter, QueueStats
from coremachine.shared.errors import InvalidArgument, PermissionDenied

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    letter: DeadLetter
    job_id: str
    task_id: str


# Dead letters are whatever reached a queue, so nothing in them is trusted:
# ids are shown as they are (within limits) but only a real job id fails a job.
_JOB_ID = re.compile(r"[0-9a-f]{64}")
_ID_CHARS = 200
_TEXT_CHARS = 4000


def printable(value: object, limit: int = _ID_CHARS) -> str:
    """Text that protobuf (UTF-8) can carry: a lone surrogate or any other
    character UTF-8 cannot encode is shown as its escape (`\\ud800`)."""
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def ids_of(letter: DeadLetter) -> tuple[str, str]:
    """Job and task ids from the message properties, else from a decodable body."""
    job_id = printable(letter.properties.get("job_id", ""))
    task_id = printable(letter.properties.get("task_id", ""))
    if not job_id:
        try:
            body = json.loads(letter.body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or too deep
            body = None
        if isinstance(body, dict):
            job_id = printable(body.get("job_id") or "")
            task_id = task_id or printable(body.get("task_id") or "")
    return job_id, task_id


def _viewed(letter: DeadLetter) -> DeadLetterView:
    """The letter with every text field safe to put in a protobuf message."""
    safe = replace(
        letter,
        queue=printable(letter.queue),
        sequence=printable(letter.sequence),
        message_id=printable(letter.message_id),
        reason=printable(letter.reason),
        description=printable(letter.description, _TEXT_CHARS),
    )
    return DeadLetterView(safe, *ids_of(letter))


def _check_sequences(sequences: list[str]) -> list[str]:
    """Dead-letter sequence numbers (as both brokers number them)."""
    bad = [s for s in sequences if not s.isdigit()]
    if bad:
        raise InvalidArgument(f"sequences must be sequence numbers, not {bad[:3]}", "sequences")
    return sequences


class Admin:
    def __init__(
        self, pool: AsyncConnectionPool, broker: Broker, store: StateStore, settings: StateSettings
    ) -> None:
        self.pool = pool
        self.broker = broker
        self.store = store
        self.settings = settings

    @property
    def queues(self) -> tuple[str, str]:
        return (self.settings.jobs_queue, self.settings.tasks_queue)

    async def stats(self) -> tuple[dict[str, int], dict[str, int], dict[str, Any]]:
        async with self.pool.connection() as conn:
            jobs: dict[str, int] = dict(await (await conn.execute(Q.jobs_by_status)).fetchall())
            tasks: dict[str, int] = dict(await (await conn.execute(Q.tasks_by_status)).fetchall())
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q.table_stats)
            tables = await cur.fetchall()
            await cur.execute(Q.recent_activity)
            activity = await cur.fetchall()
        return jobs, tasks, {"tables": tables, "activity": activity}

    async def dependencies(self) -> tuple[str, str, dict[str, int], dict[str, int]]:
        database = broker = "ok"
        try:
            async with self.pool.connection() as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:
            database = f"error: {exc.__class__.__name__}: {exc}"[:300]
        depths: dict[str, int] = {}
        dead: dict[str, int] = {}
        try:
            for queue in self.queues:
                depths[queue] = await self.broker.queue_depth(queue)
                dead[queue] = await self.broker.dead_letter_count(queue)
        except Exception as exc:
            broker = f"error: {exc.__class__.__name__}: {exc}"[:300]
        return database, broker, depths, dead

    async def queue_stats(self) -> list[tuple[str, QueueStats]]:
        """Depth, dead letters and the oldest ready message of each queue (broker calls only)."""
        return [(queue, await self.broker.queue_stats(queue)) for queue in self.queues]

    def _check_queue(self, queue: str) -> str:
        if queue not in self.queues:
            raise InvalidArgument(f"queue must be one of {', '.join(self.queues)}", "queue")
        return queue

    async def dead_letters(self, queue: str, limit: int) -> list[DeadLetterView]:
        letters = await self.broker.list_dead_letters(
            self._check_queue(queue), max(1, min(limit or 100, 1000))
        )
        return [_viewed(letter) for letter in letters]

    async def replay(self, queue: str, sequences: list[str]) -> int:
        return await self.broker.replay_dead_letters(
            self._check_queue(queue), _check_sequences(sequences)
        )

    async def fail(self, queue: str, sequences: list[str], reason: str) -> tuple[int, int]:
        """Fails the jobs of the given dead letters, then purges the letters."""
        wanted = set(_check_sequences(sequences))
        letters = [v for v in await self.dead_letters(queue, 1000) if v.letter.sequence in wanted]
        failed = 0
        for view in letters:
            if not _JOB_ID.fullmatch(view.job_id):
                continue  # no job of ours to fail: the letter is only purged
            what = f"task {view.task_id}" if view.task_id else "a job message"
            error = (
                f"{what} was dead-lettered ({view.letter.reason}: {view.letter.description})"
                f" and marked failed by an operator" + (f": {reason}" if reason else "")
            )
            try:
                _, changed = await self.store.fail_job(view.job_id, error)
                failed += changed
            except Exception:
                log.warning("could not fail job %s of a dead letter", view.job_id)
        purged = await self.broker.purge_dead_letters(queue, [v.letter.sequence for v in letters])
        return failed, purged

    async def redeploy_schema(self, confirm: bool) -> list[int]:
        if not self.settings.allow_schema_redeploy:
            raise PermissionDenied(
                "schema redeploy is disabled; set STATE_ALLOW_SCHEMA_REDEPLOY=true (development only)"
            )
        if not confirm:
            raise InvalidArgument("schema redeploy drops every job: confirm is required", "confirm")
        # The PostgreSQL queue in the same database goes too: its messages
        # would only point at jobs that no longer exist.
        queue_here = self.settings.broker == "postgres" and (
            self.settings.broker_database_url in (None, self.settings.database_url)
        )
        async with self.pool.connection() as conn, conn.transaction():
            await conn.execute("DROP SCHEMA IF EXISTS coremachine CASCADE")
            if queue_here:
                await conn.execute("DROP SCHEMA IF EXISTS broker CASCADE")
        await migrate_all(
            self.settings.database_url, self.settings.database_url if queue_here else None
        )
        log.warning("schema redeployed: every job and task was dropped")
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT version FROM coremachine.schema_migrations ORDER BY version"
            )
            return [row[0] for row in await cur.fetchall()]
