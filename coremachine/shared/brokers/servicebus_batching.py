"""Building Service Bus messages and packing them into size-limited batches.

Pure helpers for the Service Bus adapter (no network): they use the SDK's own
message and batch classes, so the sizes measured here are the sizes the SDK
will enforce when it sends.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from azure.servicebus import ServiceBusMessage, ServiceBusMessageBatch
from azure.servicebus.exceptions import MessageSizeExceededError

from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.tracing import DIAGNOSTIC_ID, TRACEPARENT

# The tiers' batch limits as the SDK reports them on an open sender link; the
# adapter always asks the link, these are for documentation and tests.
STANDARD_MAX_BATCH_BYTES = 256 * 1024
PREMIUM_MAX_BATCH_BYTES = 1024 * 1024

# Reserved application properties. A redelivery copy (abandon with a delay,
# dead-letter replay) needs its own transport message id, otherwise duplicate
# detection silently drops it while the original id is still in the window;
# the logical id and the deliveries already spent travel here instead.
LOGICAL_ID_PROPERTY = "coremachine-message-id"
PRIOR_DELIVERIES_PROPERTY = "coremachine-prior-deliveries"
RESERVED_PROPERTIES = frozenset({LOGICAL_ID_PROPERTY, PRIOR_DELIVERIES_PROPERTY})

# Service Bus rejects message ids longer than this.
MAX_MESSAGE_ID_LENGTH = 128


class MessageTooLargeError(ValueError):
    """A single message does not fit in an empty batch of the queue's tier."""

    def __init__(self, message_id: str, max_size_in_bytes: int) -> None:
        super().__init__(
            f"message {message_id!r} is larger than the {max_size_in_bytes}-byte batch limit "
            "of this Service Bus tier; store the payload in blob storage and send a reference"
        )
        self.message_id = message_id
        self.max_size_in_bytes = max_size_in_bytes


@dataclass(slots=True)
class Packed:
    """One batch ready to send, with the messages it holds (for schedule_messages)."""

    batch: ServiceBusMessageBatch
    messages: list[ServiceBusMessage] = field(default_factory=list)


def to_sdk_message(message: OutgoingMessage) -> ServiceBusMessage:
    """Builds the SDK message: message id for duplicate detection, properties as strings."""
    _reject_reserved(message.properties)
    application_properties: dict[str | bytes, Any] = {k: v for k, v in message.properties.items()}
    traceparent = message.properties.get(TRACEPARENT)
    if traceparent and DIAGNOSTIC_ID not in message.properties:
        # The Azure SDKs and Application Insights read a message's trace context here.
        application_properties[DIAGNOSTIC_ID] = traceparent
    return ServiceBusMessage(
        body=message.body,
        message_id=message.message_id,
        application_properties=application_properties,
    )


def redelivery_copy(
    *,
    logical_id: str,
    transport_id: str,
    body: bytes,
    properties: Mapping[str, str],
    prior_deliveries: int,
) -> ServiceBusMessage:
    """Builds a copy of a received message that keeps its logical id and delivery count."""
    application_properties: dict[str | bytes, Any] = {k: v for k, v in properties.items()}
    application_properties[LOGICAL_ID_PROPERTY] = logical_id
    application_properties[PRIOR_DELIVERIES_PROPERTY] = prior_deliveries
    return ServiceBusMessage(
        body=body, message_id=transport_id, application_properties=application_properties
    )


def derived_message_id(logical_id: str, suffix: str) -> str:
    """A deterministic transport id for a copy, so a retried copy is itself de-duplicated."""
    candidate = f"{logical_id}/{suffix}"
    if len(candidate) <= MAX_MESSAGE_ID_LENGTH:
        return candidate
    return hashlib.sha256(candidate.encode()).hexdigest()


def split_by_schedule(
    messages: Sequence[OutgoingMessage], now: dt.datetime
) -> tuple[list[OutgoingMessage], dict[dt.datetime, list[OutgoingMessage]]]:
    """Separates messages to send now from those to schedule, grouped by enqueue time."""
    immediate: list[OutgoingMessage] = []
    scheduled: dict[dt.datetime, list[OutgoingMessage]] = {}
    for message in messages:
        at = message.scheduled_at
        if at is not None and at.tzinfo is None:
            # The port's datetimes are UTC; a naive one is read as UTC, not local time.
            at = at.replace(tzinfo=dt.UTC)
        if at is None or at <= now:
            immediate.append(message)
        else:
            scheduled.setdefault(at, []).append(message)
    return immediate, scheduled


async def pack(
    messages: Iterable[ServiceBusMessage],
    new_batch: Callable[[], Awaitable[ServiceBusMessageBatch]],
) -> list[Packed]:
    """Packs messages in order into as few batches as fit, starting a new one on overflow.

    Every batch is built before anything is sent, so a message too large for
    any batch fails the whole call before a partial send.
    """
    packed: list[Packed] = []
    current: Packed | None = None
    for message in messages:
        if current is not None and _try_add(current.batch, message):
            current.messages.append(message)
            continue
        current = Packed(await new_batch())
        if not _try_add(current.batch, message):
            raise MessageTooLargeError(message.message_id or "", current.batch.max_size_in_bytes)
        current.messages.append(message)
        packed.append(current)
    return packed


def _try_add(batch: ServiceBusMessageBatch, message: ServiceBusMessage) -> bool:
    # The Python SDK has no try_add_message: add_message raises
    # MessageSizeExceededError (a ValueError) and leaves the batch unchanged.
    try:
        batch.add_message(message)
    except MessageSizeExceededError:
        return False
    return True


def _reject_reserved(properties: Mapping[str, str]) -> None:
    clash = RESERVED_PROPERTIES.intersection(properties)
    if clash:
        raise ValueError(f"application properties {sorted(clash)} are reserved by the broker")
