"""The broker port in memory: the same peek-lock semantics, in one process.

For unit tests of the consumers (no PostgreSQL, no sleeping: receive wakes
on sends, and `join` waits until a queue is drained). It passes the broker
contract suite (tests/contract/test_broker_memory.py). Not durable, not for
several processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from coremachine.shared.broker import (
    MAX_DELIVERY_REASON,
    DeadLetter,
    LockLostError,
    OutgoingMessage,
    QueueStats,
    ReceivedMessage,
)


@dataclass
class _Stored:
    seq: int
    message: OutgoingMessage
    enqueued_at: dt.datetime
    visible_at: float
    delivery_count: int = 0
    lock_token: str | None = None
    dead: bool = False
    reason: str = ""
    description: str = ""
    dead_at: dt.datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)


class MemoryBroker:
    """Broker port in memory (see shared/broker.py for the semantics)."""

    def __init__(self, *, lock_duration: float = 30.0, max_delivery_count: int = 10) -> None:
        self.lock_duration = lock_duration
        self.max_delivery_count = max_delivery_count
        self._queues: dict[str, dict[int, _Stored]] = {}
        self._seq = itertools.count(1)
        self._changed = asyncio.Condition()

    def _queue(self, name: str) -> dict[int, _Stored]:
        return self._queues.setdefault(name, {})

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        stored = self._queue(queue)
        live = {s.message.message_id for s in stored.values() if not s.dead}
        now = time.monotonic()
        for message in messages:
            if message.message_id in live:
                continue  # duplicate detection
            visible = now
            if message.scheduled_at is not None:
                delay = (message.scheduled_at - dt.datetime.now(dt.UTC)).total_seconds()
                visible = now + max(delay, 0.0)
            seq = next(self._seq)
            stored[seq] = _Stored(seq, message, dt.datetime.now(dt.UTC), visible)
            live.add(message.message_id)
        await self._notify()

    async def receive(
        self, queue: str, max_messages: int, max_wait: float
    ) -> list[ReceivedMessage]:
        deadline = time.monotonic() + max_wait
        while True:
            got = self._take(queue, max_messages)
            if got:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wait = min(remaining, self._next_visible_in(queue))
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), max(wait, 0.001))

    def _next_visible_in(self, queue: str) -> float:
        now = time.monotonic()
        times = [s.visible_at - now for s in self._queue(queue).values() if not s.dead]
        return max(min(times), 0.0) if times else 3600.0

    def _take(self, queue: str, limit: int) -> list[ReceivedMessage]:
        now = time.monotonic()
        out: list[ReceivedMessage] = []
        ready = sorted(
            (s for s in self._queue(queue).values() if not s.dead and s.visible_at <= now),
            key=lambda s: (s.visible_at, s.seq),
        )
        for stored in ready:
            if len(out) >= limit:
                break
            if stored.delivery_count >= self.max_delivery_count:
                self._kill(
                    stored,
                    MAX_DELIVERY_REASON,
                    f"delivered {stored.delivery_count} times without being settled",
                )
                continue
            stored.delivery_count += 1
            stored.lock_token = uuid.uuid4().hex
            stored.visible_at = now + self.lock_duration
            out.append(self._received(queue, stored))
        return out

    def _received(self, queue: str, stored: _Stored) -> ReceivedMessage:
        wall = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=stored.visible_at - time.monotonic())
        return ReceivedMessage(
            queue=queue,
            message_id=stored.message.message_id,
            body=stored.message.body,
            properties=dict(stored.message.properties),
            delivery_count=stored.delivery_count,
            enqueued_at=stored.enqueued_at,
            locked_until=wall,
            lock_token=stored.lock_token or "",
            raw=stored.seq,
        )

    def _kill(self, stored: _Stored, reason: str, description: str) -> None:
        stored.dead, stored.reason, stored.description = True, reason, description[:4000]
        stored.dead_at, stored.lock_token = dt.datetime.now(dt.UTC), None

    def _locked(self, message: ReceivedMessage) -> _Stored | None:
        stored = self._queue(message.queue).get(int(message.raw))  # type: ignore[call-overload]
        if (
            stored is None
            or stored.dead
            or stored.lock_token != message.lock_token
            or stored.visible_at <= time.monotonic()
        ):
            return None
        return stored

    async def complete(self, messages: Sequence[ReceivedMessage]) -> None:
        lost = []
        for message in messages:
            stored = self._locked(message)
            if stored is None:
                lost.append(message.message_id)
            else:
                del self._queue(message.queue)[stored.seq]
        await self._notify()
        if lost:
            raise LockLostError(f"lock lost for messages {lost}")

    async def abandon(self, messages: Sequence[ReceivedMessage], delay: float = 0.0) -> None:
        for message in messages:
            stored = self._locked(message)
            if stored is not None:
                stored.lock_token = None
                stored.visible_at = time.monotonic() + max(delay, 0.0)
        await self._notify()

    async def dead_letter(
        self, message: ReceivedMessage, reason: str, description: str = ""
    ) -> None:
        stored = self._locked(message)
        if stored is None:
            raise LockLostError(f"lock lost for message {message.message_id}")
        self._kill(stored, reason, description)
        await self._notify()

    async def renew_locks(self, messages: Sequence[ReceivedMessage]) -> list[ReceivedMessage]:
        renewed = []
        for message in messages:
            stored = self._locked(message)
            if stored is not None:
                stored.visible_at = time.monotonic() + self.lock_duration
                renewed.append(
                    dataclasses.replace(
                        message, locked_until=self._received(message.queue, stored).locked_until
                    )
                )
        return renewed

    async def queue_depth(self, queue: str) -> int:
        return sum(not s.dead for s in self._queue(queue).values())

    async def dead_letter_count(self, queue: str) -> int:
        return sum(s.dead for s in self._queue(queue).values())

    async def missing_messages(self, queue: str, message_ids: Sequence[str]) -> set[str] | None:
        present = {s.message.message_id for s in self._queue(queue).values()}
        return set(message_ids) - present

    async def queue_stats(self, queue: str) -> QueueStats:
        now = time.monotonic()
        stored = self._queue(queue).values()
        ready = [s.enqueued_at for s in stored if not s.dead and s.visible_at <= now]
        return QueueStats(
            depth=sum(not s.dead for s in stored),
            dead_letters=sum(s.dead for s in stored),
            oldest_enqueued_at=min(ready) if ready else None,
        )

    async def list_dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        dead = sorted((s for s in self._queue(queue).values() if s.dead), key=lambda s: s.seq)
        return [
            DeadLetter(
                queue=queue,
                sequence=str(s.seq),
                message_id=s.message.message_id,
                body=s.message.body,
                properties=dict(s.message.properties),
                delivery_count=s.delivery_count,
                reason=s.reason,
                description=s.description,
                enqueued_at=s.enqueued_at,
                dead_lettered_at=s.dead_at,
            )
            for s in dead[:limit]
        ]

    async def replay_dead_letters(self, queue: str, sequences: Sequence[str]) -> int:
        count = 0
        for seq in sequences:
            stored = self._queue(queue).get(int(seq))
            if stored is not None and stored.dead:
                stored.dead, stored.reason, stored.description, stored.dead_at = (
                    False,
                    "",
                    "",
                    None,
                )
                stored.delivery_count, stored.visible_at = 0, time.monotonic()
                count += 1
        await self._notify()
        return count

    async def purge_dead_letters(self, queue: str, sequences: Sequence[str]) -> int:
        count = 0
        for seq in sequences:
            stored = self._queue(queue).get(int(seq))
            if stored is not None and stored.dead:
                del self._queue(queue)[stored.seq]
                count += 1
        return count

    async def join(self, queue: str, timeout: float = 10.0) -> None:
        """Waits until the queue holds no live message (tests; never sleeps blindly)."""
        deadline = time.monotonic() + timeout
        while await self.queue_depth(queue):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"queue {queue} still holds {await self.queue_depth(queue)}")
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))

    async def close(self) -> None:
        pass
