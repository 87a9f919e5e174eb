"""The lock keeper of a long handler (shared/consuming.MessageLock), when the
broker fails or another delivery has taken the message. Its renewals on real
brokers are in the broker contract suite."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

from coremachine.shared.broker import OutgoingMessage, ReceivedMessage
from coremachine.shared.brokers.memory import MemoryBroker
from coremachine.shared.consuming import MessageLock


def lapsed_message() -> ReceivedMessage:
    now = dt.datetime.now(dt.UTC)
    return ReceivedMessage("q", "m", b"{}", {}, 1, now, now, "token")


class DownBroker(MemoryBroker):
    """A broker whose renewals fail, counting them."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals = 0

    async def renew_locks(self, messages):
        self.renewals += 1
        raise ConnectionError("broker unreachable")


async def test_a_broker_that_is_down_is_retried_about_once_a_second_not_in_a_loop():
    broker = DownBroker()
    async with MessageLock(broker, lapsed_message()) as lock:
        await asyncio.sleep(1.5)
    assert 1 <= broker.renewals <= 2
    assert not lock.lost


async def test_a_lock_another_delivery_took_is_reported_lost_and_no_longer_renewed():
    broker = MemoryBroker(lock_duration=0.2)
    await broker.send("q", [OutgoingMessage("m", b"{}")])
    [first] = await broker.receive("q", 1, max_wait=1.0)
    await asyncio.sleep(0.3)  # lapsed: the next receive is another delivery
    [second] = await broker.receive("q", 1, max_wait=1.0)
    async with MessageLock(broker, first) as lock:
        await asyncio.sleep(0.2)
    assert lock.lost and lock.message == first
    assert second.delivery_count == 2


async def test_a_naive_lock_time_is_taken_as_utc_and_the_lock_still_renewed():
    broker = MemoryBroker(lock_duration=0.3)
    await broker.send("q", [OutgoingMessage("m", b"{}")])
    [got] = await broker.receive("q", 1, max_wait=1.0)
    naive = dataclasses.replace(got, locked_until=got.locked_until.replace(tzinfo=None))
    async with MessageLock(broker, naive) as lock:
        await asyncio.sleep(0.8)  # well past the first lock
    assert not lock.lost
    await broker.complete([lock.message])
