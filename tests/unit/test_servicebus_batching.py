"""The Service Bus adapter's batching, sizing and message mapping, without a network.

Every message and batch here is the SDK's real class (`ServiceBusMessage`,
`ServiceBusMessageBatch`, `ServiceBusReceivedMessage`), so the sizes are the
ones the SDK enforces on a real link; only the sender and receiver links are
small fakes that record what the adapter asked of them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch, ServiceBusReceivedMessage

# No public encoder exists; these SDK internals turn a message into the AMQP
# bytes a receiver link would hand to `ServiceBusReceivedMessage.from_bytes`.
from azure.servicebus._pyamqp._encode import encode_payload
from azure.servicebus._transport._pyamqp_transport import PyamqpTransport
from azure.servicebus.amqp import AmqpMessageHeader
from azure.servicebus.exceptions import MessageLockLostError, MessageSizeExceededError

from coremachine.shared.broker import MAX_DELIVERY_REASON, LockLostError, OutgoingMessage
from coremachine.shared.brokers.servicebus import ServiceBusBroker, to_dead_letter, to_received
from coremachine.shared.brokers.servicebus_batching import (
    LOGICAL_ID_PROPERTY,
    MAX_MESSAGE_ID_LENGTH,
    PREMIUM_MAX_BATCH_BYTES,
    PRIOR_DELIVERIES_PROPERTY,
    STANDARD_MAX_BATCH_BYTES,
    MessageTooLargeError,
    derived_message_id,
    pack,
    split_by_schedule,
    to_sdk_message,
)

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def outgoing(i: int, size: int = 1024, **kw: Any) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=f"task-{i:05d}",
        body=bytes([i % 256]) * size,
        properties={"job_id": "job-1", "task_id": f"task-{i:05d}"},
        **kw,
    )


def batch_factory(limit: int):
    async def new_batch() -> ServiceBusMessageBatch:
        return ServiceBusMessageBatch(max_size_in_bytes=limit)

    return new_batch


# -- packing ---------------------------------------------------------------------------


async def test_thousand_1kb_messages_split_into_full_batches_under_the_standard_limit():
    sdk = [to_sdk_message(outgoing(i)) for i in range(1000)]
    packed = await pack(sdk, batch_factory(STANDARD_MAX_BATCH_BYTES))

    assert all(p.batch.size_in_bytes <= STANDARD_MAX_BATCH_BYTES for p in packed)
    # Every message sent exactly once, in order.
    assert [m.message_id for p in packed for m in p.messages] == [m.message_id for m in sdk]
    assert [len(p.batch) for p in packed] == [len(p.messages) for p in packed]
    # ~1.1 KB each on the wire: 5 batches of 256 KB, not one per message.
    assert len(packed) == 5
    # Each batch but the last is full: the next batch's first message did not fit in it.
    for full, following in itertools.pairwise(packed):
        with pytest.raises(MessageSizeExceededError):
            full.batch.add_message(
                to_sdk_message(outgoing(int(following.messages[0].message_id[5:])))
            )


async def test_premium_limit_packs_the_same_messages_into_fewer_batches():
    sdk = [to_sdk_message(outgoing(i)) for i in range(1000)]
    packed = await pack(sdk, batch_factory(PREMIUM_MAX_BATCH_BYTES))
    assert all(p.batch.size_in_bytes <= PREMIUM_MAX_BATCH_BYTES for p in packed)
    assert len(packed) == 2
    assert sum(len(p.messages) for p in packed) == 1000


async def test_300kb_message_is_rejected_against_standard_and_accepted_on_premium():
    big = to_sdk_message(outgoing(7, size=300 * 1024))
    with pytest.raises(MessageTooLargeError) as error:
        await pack([big], batch_factory(STANDARD_MAX_BATCH_BYTES))
    assert error.value.message_id == "task-00007"
    assert error.value.max_size_in_bytes == STANDARD_MAX_BATCH_BYTES
    assert "task-00007" in str(error.value) and "262144" in str(error.value)

    [only] = await pack([big], batch_factory(PREMIUM_MAX_BATCH_BYTES))
    assert only.messages == [big]


async def test_empty_input_creates_no_batch():
    calls = 0

    async def new_batch() -> ServiceBusMessageBatch:
        nonlocal calls
        calls += 1
        return ServiceBusMessageBatch(max_size_in_bytes=STANDARD_MAX_BATCH_BYTES)

    assert await pack([], new_batch) == []
    assert calls == 0


# -- outgoing mapping ------------------------------------------------------------------


def test_outgoing_message_maps_id_body_and_properties():
    sdk = to_sdk_message(
        OutgoingMessage(
            message_id="task-1",
            body=b"{}",
            properties={"job_id": "j", "traceparent": "00-abc-def-01"},
        )
    )
    assert sdk.message_id == "task-1"
    assert b"".join(sdk.body) == b"{}"
    # The trace context also goes where the Azure SDKs look for it.
    assert sdk.application_properties == {
        "job_id": "j",
        "traceparent": "00-abc-def-01",
        "Diagnostic-Id": "00-abc-def-01",
    }


def test_reserved_property_names_are_refused():
    with pytest.raises(ValueError, match="reserved"):
        to_sdk_message(OutgoingMessage("m", b"", properties={LOGICAL_ID_PROPERTY: "x"}))


def test_split_by_schedule_sends_past_and_unscheduled_now_and_groups_future_by_time():
    soon, later = NOW + dt.timedelta(seconds=5), NOW + dt.timedelta(minutes=1)
    messages = [
        outgoing(0),
        outgoing(1, scheduled_at=NOW - dt.timedelta(seconds=1)),
        outgoing(2, scheduled_at=soon),
        outgoing(3, scheduled_at=later),
        outgoing(4, scheduled_at=soon),
        # A naive time is UTC, not local time.
        outgoing(5, scheduled_at=later.replace(tzinfo=None)),
    ]
    immediate, scheduled = split_by_schedule(messages, NOW)
    assert [m.message_id for m in immediate] == ["task-00000", "task-00001"]
    assert {at: [m.message_id for m in group] for at, group in scheduled.items()} == {
        soon: ["task-00002", "task-00004"],
        later: ["task-00003", "task-00005"],
    }


def test_derived_message_id_is_deterministic_distinct_and_within_the_limit():
    assert derived_message_id("task-1", "retry-2") == derived_message_id("task-1", "retry-2")
    assert derived_message_id("task-1", "retry-2") != "task-1"
    long_id = "j" * 120
    derived = derived_message_id(long_id, "retry-2")
    assert len(derived) <= MAX_MESSAGE_ID_LENGTH
    assert derived != derived_message_id(long_id, "retry-3")


# -- the adapter over fake links -------------------------------------------------------


class FakeSender:
    """Records batches and schedules; batches are the SDK's, with the tier's limit."""

    def __init__(self, limit: int = STANDARD_MAX_BATCH_BYTES) -> None:
        self.limit = limit
        self.sent: list[ServiceBusMessageBatch] = []
        self.scheduled: list[tuple[list[ServiceBusMessage], dt.datetime]] = []
        self.cancelled: list[int] = []
        self._next_sequence = 100

    async def create_message_batch(self, max_size_in_bytes: int | None = None):
        return ServiceBusMessageBatch(max_size_in_bytes=max_size_in_bytes or self.limit)

    async def send_messages(self, batch: ServiceBusMessageBatch) -> None:
        self.sent.append(batch)

    async def schedule_messages(self, messages, schedule_time_utc) -> list[int]:
        self.scheduled.append((list(messages), schedule_time_utc))
        numbers = list(range(self._next_sequence, self._next_sequence + len(messages)))
        self._next_sequence += len(messages)
        return numbers

    async def cancel_scheduled_messages(self, sequence_numbers) -> None:
        self.cancelled.extend(sequence_numbers)

    async def close(self) -> None:
        pass


class FakeReceiver:
    """Hands out prepared messages and records settlements; some locks can be lost."""

    def __init__(self, inbox: list[ServiceBusReceivedMessage] | None = None) -> None:
        self.inbox = inbox or []
        self.completed: list[ServiceBusReceivedMessage] = []
        self.dead_lettered: list[tuple[ServiceBusReceivedMessage, str, str]] = []
        self.lost: set[int] = set()  # sequence numbers whose lock is gone

    async def receive_messages(self, max_message_count: int, max_wait_time: float):
        taken, self.inbox = self.inbox[:max_message_count], self.inbox[max_message_count:]
        return taken

    async def complete_message(self, message: ServiceBusReceivedMessage) -> None:
        if message.sequence_number in self.lost:
            raise MessageLockLostError(message="lock expired")
        self.completed.append(message)

    async def dead_letter_message(self, message, reason=None, error_description=None) -> None:
        self.dead_lettered.append((message, reason, error_description))

    async def close(self) -> None:
        pass


class FakeClient:
    def __init__(self, sender: FakeSender, receiver: FakeReceiver) -> None:
        self.sender, self.receiver = sender, receiver

    def get_queue_sender(self, queue: str) -> FakeSender:
        return self.sender

    def get_queue_receiver(self, queue: str, **kw: Any) -> FakeReceiver:
        return self.receiver

    async def close(self) -> None:
        pass


def broker_over(sender: FakeSender, receiver: FakeReceiver | None = None) -> ServiceBusBroker:
    client = FakeClient(sender, receiver or FakeReceiver())
    return ServiceBusBroker(lambda: client, _no_admin, max_delivery_count=3)  # type: ignore[arg-type]


def _no_admin() -> Any:
    raise AssertionError("these tests must not need the administration API")


def received(
    message: ServiceBusMessage, *, sequence: int, prior_failures: int = 0
) -> ServiceBusReceivedMessage:
    """The message as a peek-lock receiver would hand it over (broker annotations added)."""
    raw = message.raw_amqp_message
    raw.header = AmqpMessageHeader(delivery_count=prior_failures)
    raw.annotations = {
        b"x-opt-sequence-number": sequence,
        b"x-opt-enqueued-time": int(NOW.timestamp() * 1000),
        # Locked far in the future so the adapter treats the lock as live.
        b"x-opt-locked-until": int((dt.datetime.now(dt.UTC).timestamp() + 60) * 1000),
    }
    # The service sends the lock token as an AMQP uuid.
    raw.delivery_annotations = {
        b"x-opt-lock-token": uuid.UUID(f"00000000-0000-0000-0000-{sequence:012d}")
    }
    payload = bytearray()
    encode_payload(payload, PyamqpTransport.to_outgoing_amqp_message(raw))
    return ServiceBusReceivedMessage.from_bytes(bytes(payload))


async def test_send_batches_immediate_messages_and_schedules_future_ones():
    sender = FakeSender()
    broker = broker_over(sender)
    at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    messages = [outgoing(i) for i in range(1000)] + [outgoing(5000, scheduled_at=at)]

    await broker.send("tasks", messages)

    sent_ids = [m.message_id for b in sender.sent for m in b._messages]
    assert sent_ids == [f"task-{i:05d}" for i in range(1000)]
    assert len(sender.sent) == 5
    assert all(b.size_in_bytes <= STANDARD_MAX_BATCH_BYTES for b in sender.sent)
    [(scheduled, when)] = sender.scheduled
    assert when == at
    assert [m.message_id for m in scheduled] == ["task-05000"]
    assert scheduled[0].application_properties == {"job_id": "job-1", "task_id": "task-05000"}


async def test_send_with_a_message_too_large_sends_nothing():
    sender = FakeSender()
    broker = broker_over(sender)
    with pytest.raises(MessageTooLargeError, match="task-00002"):
        await broker.send("tasks", [outgoing(1), outgoing(2, size=300 * 1024), outgoing(3)])
    assert sender.sent == [] and sender.scheduled == []


def test_received_message_maps_to_the_port():
    sdk = received(to_sdk_message(outgoing(3, size=4)), sequence=42, prior_failures=1)
    got = to_received("tasks", sdk)
    assert got.message_id == "task-00003"
    assert got.body == bytes([3]) * 4
    # Keys and values arrive as bytes; the port wants str.
    assert got.properties == {"job_id": "job-1", "task_id": "task-00003"}
    # One failed attempt before this one: this is the second delivery.
    assert got.delivery_count == 2
    assert got.enqueued_at == NOW
    assert got.locked_until > dt.datetime.now(dt.UTC)
    assert got.lock_token == "00000000-0000-0000-0000-000000000042"
    assert got.raw is sdk


async def test_abandon_with_delay_schedules_a_distinct_copy_that_reads_back_as_the_same_message():
    sender = FakeSender()
    original = received(to_sdk_message(outgoing(9, size=8)), sequence=7, prior_failures=1)
    receiver = FakeReceiver([original])
    broker = broker_over(sender, receiver)
    [message] = await broker.receive("tasks", 10, max_wait=1)
    assert message.delivery_count == 2

    before = dt.datetime.now(dt.UTC)
    await broker.abandon([message], delay=30)

    [([copy], when)] = sender.scheduled
    assert (
        before + dt.timedelta(seconds=30)
        <= when
        <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    )
    # A copy with the original id would be dropped by duplicate detection.
    assert copy.message_id != "task-00009"
    assert receiver.completed == [original]

    # Delivered later, the copy is the same logical message, one delivery further.
    again = to_received("tasks", received(copy, sequence=8))
    assert again.message_id == "task-00009"
    assert again.delivery_count == 3
    assert again.body == message.body
    assert again.properties == message.properties


async def test_abandon_with_delay_withdraws_the_copy_when_the_original_lock_was_lost():
    sender = FakeSender()
    original = received(to_sdk_message(outgoing(9)), sequence=7)
    receiver = FakeReceiver([original])
    broker = broker_over(sender, receiver)
    [message] = await broker.receive("tasks", 10, max_wait=1)
    receiver.lost.add(7)

    with pytest.raises(LockLostError, match="task-00009"):
        await broker.abandon([message], delay=30)
    # The original comes back by itself; its copy must not arrive as well.
    assert sender.cancelled == [100]


async def test_complete_settles_the_others_and_reports_a_lost_lock():
    first = received(to_sdk_message(outgoing(1)), sequence=1)
    second = received(to_sdk_message(outgoing(2)), sequence=2)
    receiver = FakeReceiver([first, second])
    broker = broker_over(FakeSender(), receiver)
    got = await broker.receive("tasks", 10, max_wait=1)
    receiver.lost.add(1)

    with pytest.raises(LockLostError, match="task-00001"):
        await broker.complete(got)
    assert receiver.completed == [second]


async def test_copy_past_the_max_delivery_count_is_dead_lettered_not_delivered():
    sender = FakeSender()
    first = received(to_sdk_message(outgoing(1)), sequence=1, prior_failures=2)
    receiver = FakeReceiver([first])
    broker = broker_over(sender, receiver)
    [message] = await broker.receive("tasks", 10, max_wait=1)
    assert message.delivery_count == 3  # the max in broker_over
    await broker.abandon([message], delay=1)
    [([copy], _)] = sender.scheduled

    receiver.inbox = [received(copy, sequence=2)]
    assert await broker.receive("tasks", 10, max_wait=1) == []
    [(dead, reason, description)] = receiver.dead_lettered
    assert dead.sequence_number == 2
    assert reason == MAX_DELIVERY_REASON
    assert "4" in description


def test_dead_letter_shows_reason_description_and_hides_service_properties():
    sdk = to_sdk_message(outgoing(5, size=2))
    sdk.application_properties = {
        **sdk.application_properties,
        "DeadLetterReason": "UndecodableBody",
        "DeadLetterErrorDescription": "bad json",
        PRIOR_DELIVERIES_PROPERTY: 0,
        LOGICAL_ID_PROPERTY: "task-00005",
    }
    dead = to_dead_letter("tasks", received(sdk, sequence=77))
    assert (dead.sequence, dead.message_id) == ("77", "task-00005")
    assert (dead.reason, dead.description) == ("UndecodableBody", "bad json")
    assert dead.properties == {"job_id": "job-1", "task_id": "task-00005"}
    assert dead.delivery_count == 1
