"""The broker contract against the PostgreSQL-backed queue."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from coremachine.shared.broker import OutgoingMessage
from coremachine.shared.brokers.postgres import PostgresBroker
from tests.contract.broker_suite import BrokerContract


class TestPostgresBroker(BrokerContract):
    @pytest.fixture
    async def broker(self, db_url):
        broker = PostgresBroker(
            db_url, lock_duration=self.lock_duration, max_delivery_count=self.max_delivery_count
        )
        await broker.open()
        yield broker
        await broker.close()

    @pytest.fixture
    def queue(self) -> str:
        return f"q_{uuid.uuid4().hex[:8]}"


class TestPostgresQueueWakeUps:
    """A consumer that found its queue drained asks again only when notified
    or when a message is due: these prove it misses nothing that way. The
    idle fallback is made far longer than the waits, so only the mechanism
    under test can deliver in time."""

    @pytest.fixture(autouse=True)
    def no_idle_fallback(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("coremachine.shared.brokers.postgres._MAX_IDLE_WAIT", 120.0)

    @pytest.fixture
    async def brokers(self, db_url) -> AsyncIterator[tuple[PostgresBroker, PostgresBroker]]:
        """A consumer's broker and, as another process would, a sender's."""
        opened = [await PostgresBroker(db_url, lock_duration=2.0).open() for _ in range(2)]
        yield opened[0], opened[1]
        for broker in opened:
            await broker.close()

    async def test_a_message_scheduled_elsewhere_is_received_when_due(self, brokers):
        consumer, sender = brokers
        queue = f"q_{uuid.uuid4().hex[:8]}"
        assert await consumer.receive(queue, 10, max_wait=0.2) == []  # drained
        at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        await sender.send(queue, [OutgoingMessage("later", b"x", scheduled_at=at)])
        [got] = await consumer.receive(queue, 10, max_wait=30)
        assert got.message_id == "later"

    async def test_a_lock_expiring_elsewhere_is_received_when_due(self, brokers):
        consumer, sender = brokers
        queue = f"q_{uuid.uuid4().hex[:8]}"
        await sender.send(queue, [OutgoingMessage("held", b"x")])
        [_held] = await sender.receive(queue, 10, max_wait=10)  # locked 2 s, never settled
        assert await consumer.receive(queue, 10, max_wait=0.2) == []
        [again] = await consumer.receive(queue, 10, max_wait=30)
        assert again.message_id == "held" and again.delivery_count == 2

    async def test_notifications_resume_after_the_listening_connection_is_lost(
        self, brokers, db_url
    ):
        consumer, sender = brokers
        queue = f"q_{uuid.uuid4().hex[:8]}"
        assert await consumer.receive(queue, 10, max_wait=0.2) == []  # listening, drained
        listener = consumer._listen_conn
        assert listener is not None
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (listener.info.backend_pid,))
        # Once reconnected, a send from elsewhere wakes the consumer again.
        deadline = asyncio.get_running_loop().time() + 30
        while consumer._listen_conn is listener or consumer._listen_conn.closed:
            assert asyncio.get_running_loop().time() < deadline, "no reconnection"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the new LISTEN is in place
        assert await consumer.receive(queue, 10, max_wait=0.2) == []
        await sender.send(queue, [OutgoingMessage("after", b"x")])
        [got] = await consumer.receive(queue, 10, max_wait=30)
        assert got.message_id == "after"
