"""What both queue consumers share: a receive that gives way to shutdown."""

from __future__ import annotations

import asyncio
import contextlib

from coremachine.shared.broker import Broker, ReceivedMessage


async def receive_or_stop(
    broker: Broker, queue: str, max_messages: int, max_wait: float, stopping: asyncio.Event
) -> list[ReceivedMessage]:
    """`broker.receive`, ended early (with nothing) when stopping is set.

    A consumer waiting on an idle queue then stops at once instead of after
    its wait. Messages a cancelled receive had locked come back when their
    lock expires: at-least-once delivery already allows it.
    """
    if stopping.is_set():
        return []
    receiving = asyncio.ensure_future(broker.receive(queue, max_messages, max_wait=max_wait))
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({receiving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if receiving.done():
        return receiving.result()
    receiving.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await receiving
    return []
