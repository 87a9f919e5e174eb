"""Priority bands on Service Bus: which queue a message goes to, and the turns
a receive takes across the band queues (weighted, none starved)."""

from __future__ import annotations

from collections import Counter

import pytest

from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.servicebus import ServiceBusBroker, band_turn_order
from coremachine.shared.domain.priorities import band_of, band_queue, check_priority


def test_priorities_fall_into_three_bands_and_normal_keeps_the_queue_name():
    assert [band_of(p) for p in range(10)] == ["low"] * 3 + ["normal"] * 4 + ["high"] * 3
    assert band_queue("tasks", "normal") == "tasks"
    assert band_queue("tasks", "high") == "tasks-high"
    with pytest.raises(ValueError):
        check_priority(10)


def test_receives_look_at_the_bands_first_in_weighted_turns():
    firsts = Counter(band_turn_order(turn)[0] for turn in range(100))
    assert firsts == {"high": 60, "normal": 30, "low": 10}
    # Every band is looked at on every turn.
    assert all(sorted(band_turn_order(t)) == ["high", "low", "normal"] for t in range(10))


async def test_send_puts_each_message_on_its_band_queue():
    broker = ServiceBusBroker(lambda: None, lambda: None, priority_bands=True)  # type: ignore[arg-type,return-value]
    sent: dict[str, list[str]] = {}

    async def record(queue: str, messages) -> None:
        sent.setdefault(queue, []).extend(m.message_id for m in messages)

    broker._send_to = record  # type: ignore[method-assign]
    await broker.send(
        "tasks",
        [OutgoingMessage(f"p{p}", b"{}", priority=p) for p in (0, 5, 9, 6, 7)],
    )
    assert sent == {"tasks-low": ["p0"], "tasks": ["p5", "p6"], "tasks-high": ["p9", "p7"]}
