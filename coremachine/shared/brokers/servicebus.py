"""The broker port on Azure Service Bus queues (azure-servicebus, async).

Where Service Bus differs from the port, the adapter bridges it:
- `delivery_count` starts at 1 on the first delivery, as Service Bus defines
  it (the Python SDK reports the AMQP header, which starts at 0);
- Service Bus cannot abandon with a delay: `abandon(delay>0)` schedules a copy
  at now+delay and completes the original. The copy has its own transport
  message id (duplicate detection would drop a copy with the original id while
  that id is in the detection window) and carries the logical message id and
  the deliveries already spent in reserved application properties, so the
  consumer sees the same `message_id` and a `delivery_count` that keeps
  counting; the adapter dead-letters a copy that exceeds the queue's max
  delivery count itself, with reason `MaxDeliveryCountExceeded`;
- duplicate detection drops any id sent within the queue's detection window,
  not only ids still waiting in the queue (docs/azure-service-bus.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from azure.servicebus import (
    ServiceBusReceivedMessage,
    ServiceBusSubQueue,
    parse_connection_string,
)
from azure.servicebus.aio import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.aio.management import ServiceBusAdministrationClient
from azure.servicebus.exceptions import (
    MessageAlreadySettled,
    MessageLockLostError,
    SessionLockLostError,
)

from coremachine.shared.broker import (
    MAX_DELIVERY_REASON,
    DeadLetter,
    LockLostError,
    OutgoingMessage,
    QueueStats,
    ReceivedMessage,
)
from coremachine.shared.brokers.servicebus_batching import (
    LOGICAL_ID_PROPERTY,
    PRIOR_DELIVERIES_PROPERTY,
    RESERVED_PROPERTIES,
    derived_message_id,
    pack,
    redelivery_copy,
    split_by_schedule,
    to_sdk_message,
)

log = logging.getLogger(__name__)

# The SDK refuses max_wait_time <= 0, and a receive needs a round trip anyway.
MIN_RECEIVE_WAIT = 0.1
# How long a dead-letter scan waits for the next message before it concludes
# the sub-queue has no more.
DEAD_LETTER_SCAN_WAIT = 5.0
DEAD_LETTER_SCAN_BATCH = 100
# A schedule request wraps each message with its id; leave room for that.
SCHEDULE_FILL_RATIO = 0.9
# Set by Service Bus on dead-lettered messages; shown as reason/description.
_DEAD_LETTER_KEYS = frozenset({"DeadLetterReason", "DeadLetterErrorDescription"})
_LOCK_LOST = (MessageLockLostError, SessionLockLostError, MessageAlreadySettled)


class ServiceBusBroker:
    """`shared.broker.Broker` on Service Bus queues; build it with a classmethod."""

    def __init__(
        self,
        client_factory: Callable[[], ServiceBusClient],
        admin_factory: Callable[[], ServiceBusAdministrationClient],
        *,
        prefetch_count: int = 0,
        max_delivery_count: int | None = None,
        owned_credential: Any = None,
    ) -> None:
        # Factories, not clients: nothing connects until the first operation.
        self._client_factory = client_factory
        self._admin_factory = admin_factory
        self._prefetch_count = prefetch_count
        self._max_delivery_count = max_delivery_count
        self._owned_credential = owned_credential
        self._client: ServiceBusClient | None = None
        self._admin: ServiceBusAdministrationClient | None = None
        self._senders: dict[str, ServiceBusSender] = {}
        self._receivers: dict[str, ServiceBusReceiver] = {}
        # An SDK receiver serves one receive call at a time.
        self._receive_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._queue_max_deliveries: dict[str, int] = {}

    @classmethod
    def from_connection_string(cls, connection_string: str, **options: Any) -> ServiceBusBroker:
        """A broker authenticated by a shared-access connection string."""
        parse_connection_string(connection_string)  # fail fast on a malformed string
        return cls(
            lambda: ServiceBusClient.from_connection_string(connection_string),
            lambda: ServiceBusAdministrationClient.from_connection_string(connection_string),
            **options,
        )

    @classmethod
    def from_namespace(
        cls, fully_qualified_namespace: str, credential: Any = None, **options: Any
    ) -> ServiceBusBroker:
        """A broker on `myns.servicebus.windows.net` with Entra ID (DefaultAzureCredential)."""
        owned = None
        if credential is None:
            from azure.identity.aio import DefaultAzureCredential

            credential = owned = DefaultAzureCredential()
        return cls(
            lambda: ServiceBusClient(fully_qualified_namespace, credential),
            lambda: ServiceBusAdministrationClient(fully_qualified_namespace, credential),
            owned_credential=owned,
            **options,
        )

    async def open(self) -> ServiceBusBroker:
        """Builds the client (links still open on first use); returns self."""
        self._service_client()
        return self

    # -- sending -------------------------------------------------------------

    async def send(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        """Sends messages in size-limited batches; future `scheduled_at` ones are scheduled."""
        if not messages:
            return
        sender = self._sender(queue)
        immediate, scheduled = split_by_schedule(messages, _now())
        # Pack everything first: a message too large fails the call before any send.
        batches = await pack(map(to_sdk_message, immediate), sender.create_message_batch)
        timed = [
            (at, await pack(map(to_sdk_message, group), self._schedule_batch_factory(sender)))
            for at, group in scheduled.items()
        ]
        for packed in batches:
            await sender.send_messages(packed.batch)
        for at, packs in timed:
            for packed in packs:
                await sender.schedule_messages(packed.messages, at)

    # -- receiving and settling ----------------------------------------------

    async def receive(
        self, queue: str, max_messages: int, max_wait: float
    ) -> list[ReceivedMessage]:
        """Returns up to max_messages peek-locked messages, waiting up to max_wait seconds."""
        receiver = self._receiver(queue)
        async with self._receive_locks[queue]:
            batch = await receiver.receive_messages(
                max_message_count=max_messages, max_wait_time=max(max_wait, MIN_RECEIVE_WAIT)
            )
        now = _now()
        received: list[ReceivedMessage] = []
        for sdk_message in batch:
            message = to_received(queue, sdk_message)
            if message.locked_until <= now:
                # Expired while prefetched: settling would fail and Service Bus
                # redelivers it anyway, so don't hand it to a consumer.
                continue
            if await self._exceeds_max_deliveries(message):
                with contextlib.suppress(LockLostError):
                    await self.dead_letter(
                        message,
                        MAX_DELIVERY_REASON,
                        f"delivered {message.delivery_count} times (delayed retries included)",
                    )
                continue
            received.append(message)
        return received

    async def complete(self, messages: Sequence[ReceivedMessage]) -> None:
        """Removes the messages; raises LockLostError if any lock was lost (others still settle)."""
        await _settle_all(messages, lambda m: self._receiver_of(m).complete_message(_raw(m)))

    async def abandon(self, messages: Sequence[ReceivedMessage], delay: float = 0.0) -> None:
        """Makes the messages visible again, after delay seconds (scheduled copy + complete)."""
        if delay <= 0:
            await _settle_all(messages, lambda m: self._receiver_of(m).abandon_message(_raw(m)))
            return
        by_queue: defaultdict[str, list[ReceivedMessage]] = defaultdict(list)
        for message in messages:
            by_queue[message.queue].append(message)
        at = _now() + dt.timedelta(seconds=delay)
        for queue, group in by_queue.items():
            await self._abandon_later(queue, group, at)

    async def dead_letter(
        self, message: ReceivedMessage, reason: str, description: str = ""
    ) -> None:
        """Moves a message to its queue's dead-letter sub-queue with reason and description."""
        await _settle_all(
            [message],
            lambda m: self._receiver_of(m).dead_letter_message(
                _raw(m), reason=reason, error_description=description
            ),
        )

    async def renew_locks(self, messages: Sequence[ReceivedMessage]) -> list[ReceivedMessage]:
        """Extends the locks; raises LockLostError if any lock was already lost."""

        async def renew(message: ReceivedMessage) -> ReceivedMessage:
            until = await self._receiver_of(message).renew_message_lock(_raw(message))
            return dataclasses.replace(message, locked_until=until)

        return await _settle_all(messages, renew)

    # -- operator views ------------------------------------------------------

    async def queue_depth(self, queue: str) -> int:
        """Active plus scheduled messages, from the administration API."""
        runtime = await self._admin_client().get_queue_runtime_properties(queue)
        return (runtime.active_message_count or 0) + (runtime.scheduled_message_count or 0)

    async def dead_letter_count(self, queue: str) -> int:
        """Dead-lettered messages, from the administration API."""
        runtime = await self._admin_client().get_queue_runtime_properties(queue)
        return runtime.dead_letter_message_count or 0

    async def missing_messages(self, queue: str, message_ids: Sequence[str]) -> set[str] | None:
        # Service Bus cannot look a message up by id: the janitor falls back to
        # re-sending after the duplicate-detection window (see janitor.py).
        return None

    async def queue_stats(self, queue: str) -> QueueStats:
        """Counts from the administration API; the oldest active message by a peek."""
        runtime = await self._admin_client().get_queue_runtime_properties(queue)
        depth = (runtime.active_message_count or 0) + (runtime.scheduled_message_count or 0)
        oldest = None
        if runtime.active_message_count:
            async with self._service_client().get_queue_receiver(queue, prefetch_count=0) as peeker:
                first = await peeker.peek_messages(max_message_count=1, sequence_number=1)
            if first:
                oldest = first[0].enqueued_time_utc
        return QueueStats(depth, runtime.dead_letter_message_count or 0, oldest)

    async def list_dead_letters(self, queue: str, limit: int = 100) -> list[DeadLetter]:
        """Peeks the `$deadletterqueue` sub-queue, oldest first, without locking anything."""
        found: list[DeadLetter] = []
        async with self._dead_letter_receiver(queue) as receiver:
            next_sequence = 1  # the SDK would otherwise resume where its last peek ended
            while len(found) < limit:
                peeked = await receiver.peek_messages(
                    max_message_count=limit - len(found), sequence_number=next_sequence
                )
                if not peeked:
                    break
                found.extend(to_dead_letter(queue, m) for m in peeked)
                next_sequence = max(m.sequence_number or 0 for m in peeked) + 1
        return found[:limit]

    async def replay_dead_letters(self, queue: str, sequences: Sequence[str]) -> int:
        """Re-sends the given dead letters as fresh messages and removes them from the DLQ."""

        async def replay(taken: list[ServiceBusReceivedMessage]) -> None:
            copies = []
            for sdk_message in taken:
                letter = to_dead_letter(queue, sdk_message)
                copies.append(
                    redelivery_copy(
                        logical_id=letter.message_id,
                        # Replaying the same dead letter twice is de-duplicated.
                        transport_id=derived_message_id(
                            letter.message_id, f"replay-{letter.sequence}"
                        ),
                        body=letter.body,
                        properties=letter.properties,
                        prior_deliveries=0,  # a replay starts a fresh delivery count
                    )
                )
            sender = self._sender(queue)
            for packed in await pack(copies, sender.create_message_batch):
                await sender.send_messages(packed.batch)

        return await self._take_dead_letters(queue, sequences, replay)

    async def purge_dead_letters(self, queue: str, sequences: Sequence[str]) -> int:
        """Deletes the given dead letters."""

        async def drop(taken: list[ServiceBusReceivedMessage]) -> None:
            return None

        return await self._take_dead_letters(queue, sequences, drop)

    async def close(self) -> None:
        """Closes every receiver, sender and client this broker opened."""
        handlers = [*self._receivers.values(), *self._senders.values()]
        self._receivers.clear()
        self._senders.clear()
        await asyncio.gather(*(h.close() for h in handlers), return_exceptions=True)
        for closable in (self._client, self._admin, self._owned_credential):
            if closable is not None:
                await closable.close()
        self._client = self._admin = self._owned_credential = None

    # -- internals -----------------------------------------------------------

    def _service_client(self) -> ServiceBusClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _admin_client(self) -> ServiceBusAdministrationClient:
        if self._admin is None:
            self._admin = self._admin_factory()
        return self._admin

    def _sender(self, queue: str) -> ServiceBusSender:
        if queue not in self._senders:
            self._senders[queue] = self._service_client().get_queue_sender(queue)
        return self._senders[queue]

    def _receiver(self, queue: str) -> ServiceBusReceiver:
        if queue not in self._receivers:
            self._receivers[queue] = self._service_client().get_queue_receiver(
                queue, prefetch_count=self._prefetch_count
            )
        return self._receivers[queue]

    def _receiver_of(self, message: ReceivedMessage) -> ServiceBusReceiver:
        # Service Bus settles a delivery only on the link that received it.
        receiver = self._receivers.get(message.queue)
        if receiver is None:
            raise LockLostError(f"no open receiver for queue {message.queue!r}; lock is gone")
        return receiver

    def _dead_letter_receiver(self, queue: str) -> ServiceBusReceiver:
        # Opened per operator action and closed after it: rare, and it must not
        # hold prefetched locks on dead letters between actions.
        return self._service_client().get_queue_receiver(
            queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER, prefetch_count=0
        )

    @staticmethod
    def _schedule_batch_factory(sender: ServiceBusSender) -> Callable[[], Awaitable[Any]]:
        async def new_batch() -> Any:
            full = await sender.create_message_batch()
            return await sender.create_message_batch(
                int(full.max_size_in_bytes * SCHEDULE_FILL_RATIO)
            )

        return new_batch

    async def _exceeds_max_deliveries(self, message: ReceivedMessage) -> bool:
        # Service Bus counts deliveries of the original itself; only copies
        # (abandon with delay) need the adapter to carry the count over.
        if not _prior_deliveries(_decoded(_raw(message).application_properties or {})):
            return False
        return message.delivery_count > await self._max_deliveries(message.queue)

    async def _max_deliveries(self, queue: str) -> int:
        if self._max_delivery_count is not None:
            return self._max_delivery_count
        if queue not in self._queue_max_deliveries:
            properties = await self._admin_client().get_queue(queue)
            self._queue_max_deliveries[queue] = properties.max_delivery_count or 10
        return self._queue_max_deliveries[queue]

    async def _abandon_later(
        self, queue: str, messages: list[ReceivedMessage], at: dt.datetime
    ) -> None:
        copies = [
            redelivery_copy(
                logical_id=m.message_id,
                transport_id=derived_message_id(m.message_id, f"retry-{m.delivery_count}"),
                body=m.body,
                properties=m.properties,
                prior_deliveries=m.delivery_count,
            )
            for m in messages
        ]
        sender = self._sender(queue)
        sequence_of: dict[int, int] = {}
        position = 0
        for packed in await pack(copies, self._schedule_batch_factory(sender)):
            numbers = await sender.schedule_messages(packed.messages, at)
            for number in numbers:
                sequence_of[position] = number
                position += 1
        lost: list[int] = []

        async def complete(index: int) -> None:
            try:
                await self._receiver_of(messages[index]).complete_message(_raw(messages[index]))
            except (*_LOCK_LOST, LockLostError):
                lost.append(index)

        await asyncio.gather(*(complete(i) for i in range(len(messages))))
        if lost:
            # The original comes back when its lock expires: withdraw its copy
            # so the consumer doesn't get it twice.
            await sender.cancel_scheduled_messages([sequence_of[i] for i in lost])
            ids = ", ".join(messages[i].message_id for i in lost)
            raise LockLostError(f"lock lost before abandon completed: {ids}")

    async def _take_dead_letters(
        self,
        queue: str,
        sequences: Sequence[str],
        handle: Callable[[list[ServiceBusReceivedMessage]], Awaitable[None]],
    ) -> int:
        wanted = set(sequences)
        taken: list[ServiceBusReceivedMessage] = []
        held: list[ServiceBusReceivedMessage] = []
        async with self._dead_letter_receiver(queue) as receiver:
            try:
                # Dead letters can only be settled after a locked receive; the
                # others stay locked until the scan ends, so each receive call
                # moves on to new messages, then they are released.
                while wanted:
                    batch = await receiver.receive_messages(
                        max_message_count=DEAD_LETTER_SCAN_BATCH,
                        max_wait_time=DEAD_LETTER_SCAN_WAIT,
                    )
                    if not batch:
                        break
                    for sdk_message in batch:
                        sequence = str(sdk_message.sequence_number)
                        if sequence in wanted:
                            wanted.discard(sequence)
                            taken.append(sdk_message)
                        else:
                            held.append(sdk_message)
                await handle(taken)
                for sdk_message in taken:
                    await receiver.complete_message(sdk_message)
            finally:
                await asyncio.gather(
                    *(receiver.abandon_message(m) for m in held), return_exceptions=True
                )
        return len(taken)


def to_received(queue: str, sdk_message: ServiceBusReceivedMessage) -> ReceivedMessage:
    """Maps a peek-locked SDK message to the port's ReceivedMessage."""
    properties = _decoded(sdk_message.application_properties or {})
    now = _now()
    return ReceivedMessage(
        queue=queue,
        message_id=properties.get(LOGICAL_ID_PROPERTY) or sdk_message.message_id or "",
        body=_body_bytes(sdk_message),
        properties=_user_properties(properties),
        delivery_count=_delivery_count(sdk_message, properties),
        enqueued_at=sdk_message.enqueued_time_utc or now,
        locked_until=sdk_message.locked_until_utc or now,
        lock_token=_text(sdk_message.lock_token or ""),
        raw=sdk_message,
    )


def to_dead_letter(queue: str, sdk_message: ServiceBusReceivedMessage) -> DeadLetter:
    """Maps a dead-lettered SDK message (peeked or received) to the port's DeadLetter."""
    properties = _decoded(sdk_message.application_properties or {})
    return DeadLetter(
        queue=queue,
        sequence=str(sdk_message.sequence_number),
        message_id=properties.get(LOGICAL_ID_PROPERTY) or sdk_message.message_id or "",
        body=_body_bytes(sdk_message),
        properties=_user_properties(properties),
        delivery_count=_delivery_count(sdk_message, properties),
        reason=sdk_message.dead_letter_reason or "",
        description=sdk_message.dead_letter_error_description or "",
        enqueued_at=sdk_message.enqueued_time_utc or _now(),
        # The SDK does not expose when a message was dead-lettered.
        dead_lettered_at=None,
    )


async def _settle_all(
    messages: Iterable[ReceivedMessage],
    operation: Callable[[ReceivedMessage], Awaitable[Any]],
) -> list[Any]:
    # Settle every message even if some locks are lost, then report the lost
    # ones together; any other error propagates unchanged.
    items = list(messages)
    results = await asyncio.gather(*(operation(m) for m in items), return_exceptions=True)
    lost = [m.message_id for m, r in zip(items, results, strict=True) if _is_lock_lost(r)]
    for result in results:
        if isinstance(result, BaseException) and not _is_lock_lost(result):
            raise result
    if lost:
        raise LockLostError(f"message lock lost: {', '.join(lost)}")
    return results


def _is_lock_lost(result: object) -> bool:
    return isinstance(result, (*_LOCK_LOST, LockLostError))


def _raw(message: ReceivedMessage) -> ServiceBusReceivedMessage:
    if not isinstance(message.raw, ServiceBusReceivedMessage):
        raise TypeError("this ReceivedMessage was not received by ServiceBusBroker")
    return message.raw


def _body_bytes(sdk_message: ServiceBusReceivedMessage) -> bytes:
    # A data body arrives as an iterable of byte sections.
    body = sdk_message.body
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    return b"".join(body)


def _decoded(raw: dict[Any, Any]) -> dict[str, str]:
    # Received keys and string values are bytes; other types keep theirs.
    return {_text(key): _text(value) for key, value in raw.items()}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value)


def _user_properties(properties: dict[str, str]) -> dict[str, str]:
    hidden = RESERVED_PROPERTIES | _DEAD_LETTER_KEYS
    return {k: v for k, v in properties.items() if k not in hidden}


def _delivery_count(sdk_message: ServiceBusReceivedMessage, properties: dict[str, str]) -> int:
    # The AMQP header counts prior failed attempts (0 on the first delivery);
    # Service Bus and the port count deliveries (1 on the first).
    return _prior_deliveries(properties) + (sdk_message.delivery_count or 0) + 1


def _prior_deliveries(properties: dict[str, str]) -> int:
    return int(properties.get(PRIOR_DELIVERIES_PROPERTY, "0"))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
