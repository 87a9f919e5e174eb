"""The broker port: named queues with Azure Service Bus semantics.

Every adapter (PostgreSQL queue, Service Bus, in-memory) implements `Broker`
and passes the same contract suite (tests/contract/broker_suite.py).

Semantics, as on Service Bus:
- peek-lock: `receive` locks messages for `lock_duration`; `complete` removes
  them; `abandon` makes them visible again; a lock that expires makes the
  message visible again and the next delivery has `delivery_count` + 1;
- a message received more than `max_delivery_count` times is dead-lettered
  with reason `MaxDeliveryCountExceeded` instead of being delivered;
- `dead_letter` moves a message to the queue's dead-letter sub-queue with a
  reason and description; dead letters can be listed, replayed or purged;
- `scheduled_at` delays the first delivery (retries with backoff);
- `message_id` is the duplicate-detection key: sending a message whose id is
  already waiting in the queue is a no-op.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

MAX_DELIVERY_REASON = "MaxDeliveryCountExceeded"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to send: body bytes plus routing metadata."""

    message_id: str
    body: bytes
    properties: Mapping[str, str] = field(default_factory=dict)
    scheduled_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A locked message; settle it with complete, abandon or dead_letter."""

    queue: str
    message_id: str
    body: bytes
    properties: Mapping[str, str]
    delivery_count: int
    enqueued_at: dt.datetime
    locked_until: dt.datetime
    # Adapter-specific handle identifying this delivery (its lock).
    lock_token: str
    # Opaque adapter handle (e.g. the Service Bus message object); not compared.
    raw: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered message as an operator sees it."""

    queue: str
    sequence: str
    message_id: str
    body: bytes
    properties: Mapping[str, str]
    delivery_count: int
    reason: str
    description: str
    enqueued_at: dt.datetime
    dead_lettered_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """A queue at a glance, for metrics: its size and how long its oldest message waits."""

    depth: int  # active messages (as queue_depth)
    dead_letters: int  # as dead_letter_count
    # Enqueue time of the oldest message ready to be delivered now (None: none
    # waits). Service Bus: of the oldest active message, whatever its state.
    oldest_enqueued_at: dt.datetime | None


class LockLostError(Exception):
    """Settling a message whose lock expired or was taken by another delivery."""


@runtime_checkable
class Broker(Protocol):
    """A message broker with named queues (see the module docstring)."""

    async def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Sends messages in as few round trips as the transport allows."""

    async def receive(
        self, queue: str, max_messages: int, max_wait: float
    ) -> list[ReceivedMessage]:
        """Returns up to max_messages locked messages, waiting up to max_wait seconds for the first."""

    async def complete(self, messages: Sequence[ReceivedMessage]) -> None:
        """Removes settled messages; raises LockLostError if a lock was lost."""

    async def abandon(self, messages: Sequence[ReceivedMessage], delay: float = 0.0) -> None:
        """Releases the locks so the messages are delivered again (after delay seconds)."""

    async def dead_letter(
        self, message: ReceivedMessage, reason: str, description: str = ""
    ) -> None:
        """Moves a message to its queue's dead-letter sub-queue."""

    async def renew_locks(self, messages: Sequence[ReceivedMessage]) -> list[ReceivedMessage]:
        """Extends the locks of long-running messages; returns them with the new lock time."""

    async def queue_depth(self, queue: str) -> int:
        """Active (not dead-lettered) messages in the queue, scheduled ones included."""

    async def dead_letter_count(self, queue: str) -> int:
        """Messages in the queue's dead-letter sub-queue (cheap: for health checks)."""

    async def missing_messages(self, queue: str, message_ids: Sequence[str]) -> set[str] | None:
        """Which of these ids the queue holds no message for (live or dead-lettered),
        or None when the broker cannot tell (Service Bus has no look-up by id)."""

    async def queue_stats(self, queue: str) -> QueueStats:
        """Depth, dead letters and the oldest waiting message, in as few calls as it can."""

    async def list_dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Dead-lettered messages of a queue, oldest first."""

    async def replay_dead_letters(self, queue: str, sequences: Sequence[str]) -> int:
        """Moves the given dead letters back to the queue with a fresh delivery count."""

    async def purge_dead_letters(self, queue: str, sequences: Sequence[str]) -> int:
        """Deletes the given dead letters."""

    async def close(self) -> None:
        """Releases connections."""
