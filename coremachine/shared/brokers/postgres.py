"""The PostgreSQL-backed queue: the broker's local default.

Messages live in `broker.messages`. `receive` locks rows with
`FOR UPDATE SKIP LOCKED` and hides them until their peek-lock expires, so
competing consumers never get the same message while its lock is held. A
sender NOTIFYs the queue's channel in its transaction; an idle consumer waits
on that notification (or on the next scheduled message) instead of polling.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from coremachine.shared.broker import (
    MAX_DELIVERY_REASON,
    DeadLetter,
    LockLostError,
    OutgoingMessage,
    QueueStats,
    ReceivedMessage,
)
from coremachine.shared.migrations import Ledger, check_schema, migrate
from coremachine.shared.pg_json import records
from coremachine.shared.pg_pool import open_pool
from coremachine.shared.sql_queries import Queries

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).with_name("postgres_sql")
MIGRATIONS_DIR = SQL_DIR / "migrations"
LEDGER = Ledger(schema="broker")
_Q = Queries(SQL_DIR / "queries.sql")

# How much earlier a message counts per priority level above normal (and
# later below): see postgres_sql/migrations/0003_priority.sql.
DEFAULT_PRIORITY_AGING_SECONDS = 10.0

# Upper bound on an idle wait between checks, in case a notification is lost
# (e.g. the listening connection was re-established).
_MAX_IDLE_WAIT = 5.0
# First wait before reconnecting the LISTEN connection (then doubling, up to
# _MAX_IDLE_WAIT) while PostgreSQL is down.
_LISTEN_RETRY_SECONDS = 0.5


def channel_for(queue: str) -> str:
    """The NOTIFY channel of a queue."""
    return f"cm_broker_{queue}"


async def enqueue_in_transaction(
    conn: psycopg.AsyncConnection,
    queue: str,
    messages: Sequence[OutgoingMessage],
    aging_seconds: float = DEFAULT_PRIORITY_AGING_SECONDS,
) -> None:
    """Inserts messages using the caller's connection (and transaction).

    When the queue lives in the same database as the caller's data, this is
    the transactional outbox without the relay hop: the messages become
    visible exactly when the caller's state change commits.
    """
    if not messages:
        return
    await conn.execute(
        _Q.send,
        {
            "queue": queue,
            "channel": channel_for(queue),
            "aging_seconds": aging_seconds,
            "messages": records(
                {
                    "message_id": m.message_id,
                    "body": base64.b64encode(m.body).decode(),
                    "properties": dict(m.properties),
                    "scheduled_at": m.scheduled_at.isoformat() if m.scheduled_at else None,
                    "priority": m.priority,
                }
                for m in messages
            ),
        },
    )


async def migrate_queue_schema(conninfo: str) -> list[int]:
    """Applies the queue's migrations to its database."""
    return await migrate(conninfo, MIGRATIONS_DIR, LEDGER)


class PostgresBroker:
    """Broker port on PostgreSQL (see shared/broker.py for the semantics)."""

    def __init__(
        self,
        conninfo: str,
        *,
        lock_duration: float = 60.0,
        max_delivery_count: int = 10,
        pool_size: int = 4,
        priority_aging_seconds: float = DEFAULT_PRIORITY_AGING_SECONDS,
    ) -> None:
        self._conninfo = conninfo
        self.lock_duration = lock_duration
        self.max_delivery_count = max_delivery_count
        self.aging_seconds = priority_aging_seconds
        # Pools check idle connections cheaply before handing them out, so
        # that a PostgreSQL restart costs no failed call (shared/pg_pool.py).
        self._pool = open_pool(
            conninfo, min_size=1, max_size=pool_size, kwargs={"autocommit": True}, timeout=10
        )
        # Peek-lock bookkeeping (receive, complete, abandon, renew) commits
        # without waiting for the WAL flush: if PostgreSQL itself crashed and
        # lost such a commit, the message would only be visible (again) sooner,
        # which at-least-once delivery already allows. Sends stay durable.
        self._lock_pool = open_pool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, "options": "-c synchronous_commit=off"},
            timeout=10,
        )
        self._listen_conn: psycopg.AsyncConnection | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._wakeups: dict[str, asyncio.Event] = {}
        self._pending_listens: dict[str, asyncio.Future[None]] = {}
        # Per queue: when to ask again after a receive found it drained
        # (None: at once). See receive().
        self._next_due: dict[str, float | None] = {}

    async def open(self) -> PostgresBroker:
        """Opens the pool and checks that the queue schema is migrated."""
        await self._pool.open(wait=True)
        await self._lock_pool.open(wait=True)
        async with self._pool.connection() as conn:
            await check_schema(conn, MIGRATIONS_DIR, LEDGER)
        return self

    # -- sending ---------------------------------------------------------------

    async def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        async with self._pool.connection() as conn:
            await enqueue_in_transaction(conn, queue, messages, self.aging_seconds)
        self._check_soon(queue)

    # -- receiving -------------------------------------------------------------

    async def receive(
        self, queue: str, max_messages: int, max_wait: float
    ) -> list[ReceivedMessage]:
        wakeup = await self._wakeup_for(queue)
        deadline = time.monotonic() + max_wait
        while True:
            # After a receive that drained the queue, ask again only when a
            # notification came (a send, an abandon, a replay) or a message
            # is due (scheduled, or a lock expiring): no empty query per
            # message on the hot path, and none per second while idle.
            due = self._next_due.get(queue)
            if due is None or wakeup.is_set() or time.monotonic() >= due:
                wakeup.clear()
                received, next_in = await self._receive_now(queue, max_messages)
                self._next_due[queue] = (
                    None
                    if len(received) >= max_messages  # maybe more: ask at once next time
                    else time.monotonic() + min(_MAX_IDLE_WAIT, max(next_in, 0.0) + 0.005)
                )
                if received:
                    return received
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return []
            due = self._next_due.get(queue)
            wait = remaining if due is None else min(remaining, max(due - now, 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=wait)

    async def _receive_now(self, queue: str, limit: int) -> tuple[list[ReceivedMessage], float]:
        """Locks up to `limit` messages; also returns the seconds until the next
        of the others becomes visible (_MAX_IDLE_WAIT if there is none)."""
        params = {
            "queue": queue,
            "limit": limit,
            "lock_seconds": self.lock_duration,
            "max_delivery_count": self.max_delivery_count,
            "max_delivery_reason": MAX_DELIVERY_REASON,
            "aging_seconds": self.aging_seconds,
        }
        async with self._lock_pool.connection() as conn:
            cur = await conn.execute(_Q.receive, params)
            rows = await cur.fetchall()
        next_in = rows[0][-1] if rows and rows[0][-1] is not None else _MAX_IDLE_WAIT
        return [
            ReceivedMessage(
                queue=queue,
                message_id=message_id,
                body=bytes(body),
                properties=properties,
                delivery_count=delivery_count,
                enqueued_at=enqueued_at,
                locked_until=locked_until,
                lock_token=str(lock_token),
                raw=seq,
            )
            for seq, message_id, body, properties, delivery_count, enqueued_at, locked_until, lock_token, _ in rows
            if seq is not None
        ], float(next_in)

    def _check_soon(self, queue: str, delay: float = 0.0) -> None:
        """This process made messages visible (now or after delay): the next
        receive asks without waiting for the notification to come back."""
        due = self._next_due.get(queue)
        at = time.monotonic() + max(delay, 0.0)
        if due is not None and at < due:
            self._next_due[queue] = at

    async def _wakeup_for(self, queue: str) -> asyncio.Event:
        event = self._wakeups.get(queue)
        if event is not None and queue not in self._pending_listens:
            return event
        if event is None:
            event = self._wakeups[queue] = asyncio.Event()
            self._pending_listens[queue] = asyncio.get_running_loop().create_future()
        listening = self._pending_listens[queue]
        if self._listen_task is None or self._listen_task.done():
            self._listen_task = asyncio.create_task(self._dispatch_notifications())
        # Receive only once LISTEN is in place, so no notification between the
        # first fetch and the first wait can be missed.
        await asyncio.shield(listening)
        return event

    async def _dispatch_notifications(self) -> None:
        """LISTENs on every queue's channel and sets its wake-up on notifications.

        A lost connection is re-established (every channel listened to again)
        and every consumer woken to look, since notifications sent meanwhile
        are gone; until then consumers rely on their bounded idle wait.
        """
        connected_once = False
        retry_in = _LISTEN_RETRY_SECONDS
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, row_factory=tuple_row
                )
            except (psycopg.Error, OSError) as exc:
                if not connected_once:
                    # Nothing listens yet: fail the receivers waiting for LISTEN.
                    for fut in self._pending_listens.values():
                        if not fut.done():
                            fut.set_exception(exc)
                    self._pending_listens.clear()
                    self._wakeups.clear()
                    self._listen_task = None
                    return
                log.warning("queue notifications: reconnecting after %s", exc)
                await asyncio.sleep(retry_in)
                retry_in = min(retry_in * 2, _MAX_IDLE_WAIT)
                continue
            retry_in = _LISTEN_RETRY_SECONDS
            self._listen_conn = conn
            try:
                by_channel: dict[str, str] = {}
                for queue in list(self._wakeups) if connected_once else []:
                    await conn.execute(f'LISTEN "{channel_for(queue)}"')
                    by_channel[channel_for(queue)] = queue
                    self._wakeups[queue].set()  # look: notifications may have been missed
                connected_once = True
                while True:
                    for queue, fut in list(self._pending_listens.items()):
                        await conn.execute(f'LISTEN "{channel_for(queue)}"')
                        by_channel[channel_for(queue)] = queue
                        del self._pending_listens[queue]
                        if not fut.done():
                            fut.set_result(None)
                    # notifies() holds the connection while it waits; a short
                    # timeout lets new LISTENs in without cancelling a wait.
                    async for notify in conn.notifies(timeout=0.25):
                        woken = by_channel.get(notify.channel)
                        if woken is not None:
                            self._wakeups[woken].set()
            except (psycopg.Error, OSError) as exc:
                # Lost (PostgreSQL restarting, the connection terminated):
                # consumers fall back on their bounded idle wait meanwhile.
                log.warning("queue notifications: connection lost (%s)", exc)
                for event in self._wakeups.values():
                    event.set()
                with contextlib.suppress(Exception):
                    await conn.close()
                await asyncio.sleep(0.5)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise

    # -- settling --------------------------------------------------------------

    @staticmethod
    def _locks(messages: Sequence[ReceivedMessage]) -> dict[str, str]:
        return {"locks": records({"seq": m.raw, "token": m.lock_token} for m in messages)}

    async def complete(self, messages: Sequence[ReceivedMessage]) -> None:
        if not messages:
            return
        async with self._lock_pool.connection() as conn:
            cur = await conn.execute(_Q.complete, self._locks(messages))
            done = {row[0] for row in await cur.fetchall()}
        lost = [m.message_id for m in messages if m.raw not in done]
        if lost:
            raise LockLostError(f"lock lost for messages {lost}")

    async def abandon(self, messages: Sequence[ReceivedMessage], delay: float = 0.0) -> None:
        if not messages:
            return
        async with self._lock_pool.connection() as conn:
            await conn.execute(
                _Q.abandon,
                {
                    **self._locks(messages),
                    "delay_seconds": delay,
                    "aging_seconds": self.aging_seconds,
                },
            )
            if delay <= 0:
                await conn.execute(_Q.notify, {"channel": channel_for(messages[0].queue)})
        self._check_soon(messages[0].queue, delay)

    async def dead_letter(
        self, message: ReceivedMessage, reason: str, description: str = ""
    ) -> None:
        async with self._lock_pool.connection() as conn:
            cur = await conn.execute(
                _Q.dead_letter,
                {
                    "seq": message.raw,
                    "token": message.lock_token,
                    "reason": reason,
                    "description": description[:4000],
                },
            )
            if await cur.fetchone() is None:
                raise LockLostError(f"lock lost for message {message.message_id}")

    async def renew_locks(self, messages: Sequence[ReceivedMessage]) -> list[ReceivedMessage]:
        if not messages:
            return []
        async with self._lock_pool.connection() as conn:
            cur = await conn.execute(
                _Q.renew_locks,
                {
                    **self._locks(messages),
                    "lock_seconds": self.lock_duration,
                    "aging_seconds": self.aging_seconds,
                },
            )
            renewed: dict[int, dt.datetime] = dict(await cur.fetchall())
        out = []
        for m in messages:
            if m.raw in renewed:
                out.append(
                    ReceivedMessage(
                        queue=m.queue,
                        message_id=m.message_id,
                        body=m.body,
                        properties=m.properties,
                        delivery_count=m.delivery_count,
                        enqueued_at=m.enqueued_at,
                        locked_until=renewed[m.raw],
                        lock_token=m.lock_token,
                        raw=m.raw,
                    )
                )
        return out

    # -- inspection and dead letters -----------------------------------------------

    async def queue_depth(self, queue: str) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_Q.queue_depth, {"queue": queue})
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def dead_letter_count(self, queue: str) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_Q.dead_letter_count, {"queue": queue})
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def missing_messages(self, queue: str, message_ids: Sequence[str]) -> set[str] | None:
        if not message_ids:
            return set()
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _Q.present_messages, {"queue": queue, "message_ids": list(message_ids)}
            )
            present = {row[0] for row in await cur.fetchall()}
        return set(message_ids) - present

    async def queue_stats(self, queue: str) -> QueueStats:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_Q.queue_stats, {"queue": queue})
            row = await cur.fetchone()
        assert row is not None
        return QueueStats(int(row[0]), int(row[1]), row[2])

    def connection_pools(self) -> list[tuple[str, AsyncConnectionPool]]:
        """The queue's connection pools, for metrics (shared/metrics.broker_pools)."""
        return [("broker", self._pool), ("broker_locks", self._lock_pool)]

    async def list_dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_Q.list_dead_letters, {"queue": queue, "limit": limit})
            rows = await cur.fetchall()
        return [
            DeadLetter(
                queue=queue,
                sequence=str(seq),
                message_id=message_id,
                body=bytes(body),
                properties=properties,
                delivery_count=delivery_count,
                reason=reason or "",
                description=description or "",
                enqueued_at=enqueued_at,
                dead_lettered_at=dead_lettered_at,
            )
            for seq, message_id, body, properties, delivery_count, reason, description, enqueued_at, dead_lettered_at in rows
        ]

    async def replay_dead_letters(self, queue: str, sequences: Sequence[str]) -> int:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                _Q.replay_dead_letters,
                {
                    "queue": queue,
                    "seqs": [int(s) for s in sequences],
                    "aging_seconds": self.aging_seconds,
                },
            )
            count = len(await cur.fetchall())
            await conn.execute(_Q.notify, {"channel": channel_for(queue)})
        self._check_soon(queue)
        return count

    async def purge_dead_letters(self, queue: str, sequences: Sequence[str]) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                _Q.purge_dead_letters, {"queue": queue, "seqs": [int(s) for s in sequences]}
            )
            return len(await cur.fetchall())

    async def close(self) -> None:
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listen_task
        if self._listen_conn is not None:
            with contextlib.suppress(Exception):
                await self._listen_conn.close()
        await self._lock_pool.close()
        await self._pool.close()
