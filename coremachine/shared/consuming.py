"""What the queue consumers share: a receive that gives way to shutdown, and
a message lock kept while a long handler runs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from types import TracebackType

from coremachine.shared.broker import Broker, ReceivedMessage

log = logging.getLogger(__name__)

# The shortest wait between two renewals (a lock already about to lapse).
MIN_RENEW_INTERVAL = 0.05
# After a failed renewal (the broker is down), at least this long before the
# next try: a lapsed lock must not turn the keeper into a busy loop.
RENEW_RETRY_SECONDS = 1.0


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


class MessageLock:
    """Keeps one received message's lock while its handler runs: renewed at a
    third of what is left of it, until the block ends.

    Planning a million-task stage takes minutes, longer than the broker's
    lock (BROKER_LOCK_SECONDS). A lapsed lock hands the message to another
    delivery, which starts the same work over beside the first; and after
    BROKER_MAX_DELIVERY_COUNT lapses the broker dead-letters the message and
    the job waits forever. Settle with `.message`: the latest renewal.
    """

    def __init__(self, broker: Broker, message: ReceivedMessage) -> None:
        self.broker = broker
        self.message = message
        self.lost = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> MessageLock:
        self._task = asyncio.create_task(self._keep())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _wait(self) -> float:
        until = self.message.locked_until
        if until.tzinfo is None:  # an adapter's naive time is UTC; never a TypeError here
            until = until.replace(tzinfo=dt.UTC)
        left = (until - dt.datetime.now(dt.UTC)).total_seconds()
        return max(left / 3, MIN_RENEW_INTERVAL)

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._wait())
            try:
                renewed = await self.broker.renew_locks([self.message])
            except Exception as exc:  # the broker is down: try again, the lock may hold
                log.warning("renewing the lock of %s failed: %s", self.message.message_id, exc)
                await asyncio.sleep(RENEW_RETRY_SECONDS)
                continue
            if not renewed:
                # Another delivery has it (this process stalled past the
                # lock): the work is idempotent, so it goes on; settling
                # will say the lock was lost.
                self.lost = True
                log.warning("the lock of message %s was lost", self.message.message_id)
                return
            self.message = renewed[0]
