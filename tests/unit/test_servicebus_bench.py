"""The Service Bus benchmark (bench/servicebus.py) measures the adapter's real path:
its batches stay within each tier's limit and what it receives is what was sent."""

from __future__ import annotations

import itertools
import math

import pytest
from azure.servicebus.exceptions import MessageSizeExceededError

from bench.servicebus import (
    TIERS,
    as_received,
    measure_publish,
    publish,
    receive,
    task_messages,
)
from coremachine.shared.brokers.servicebus_batching import to_sdk_message


@pytest.mark.parametrize("tier", sorted(TIERS))
async def test_publish_packs_every_message_once_within_the_tier_limit(tier: str):
    limit = TIERS[tier]
    messages = task_messages(1500)

    packed = await publish(messages, limit)

    assert all(p.batch.size_in_bytes <= limit for p in packed)
    assert [m.message_id for p in packed for m in p.messages] == [m.message_id for m in messages]
    # Full batches, not one per message: no fewer than the bytes require, and
    # each batch but the last refused the next message.
    wire = sum(p.batch.size_in_bytes for p in packed)
    assert len(packed) == math.ceil(wire / limit) or len(packed) == math.ceil(wire / limit) + 1
    for full, following in itertools.pairwise(packed):
        with pytest.raises(MessageSizeExceededError):
            full.batch.add_message(to_sdk_message(messages[_index(messages, following)]))


def _index(messages, packed) -> int:
    first = packed.messages[0].message_id
    return next(i for i, m in enumerate(messages) if m.message_id == first)


def test_publish_report_counts_batches_per_1000_messages():
    report = measure_publish(2000, TIERS["standard"], rounds=1)

    assert report["largest_batch_bytes"] <= TIERS["standard"]
    assert report["batches_per_1000_messages"] == pytest.approx(
        1000 / report["messages_per_batch"], rel=0.01
    )
    assert report["messages_per_batch"] > 100  # task messages are a few hundred bytes


def test_receive_decodes_what_was_published():
    messages = task_messages(50)
    frames = [as_received(to_sdk_message(m), i + 1) for i, m in enumerate(messages)]

    received = receive(frames)

    assert [r.message_id for r in received] == [m.message_id for m in messages]
    assert [r.body for r in received] == [m.body for m in messages]
    assert received[0].properties["task_id"] == messages[0].properties["task_id"]
    assert all(r.delivery_count == 1 for r in received)
