"""The broker contract against the PostgreSQL-backed queue."""

from __future__ import annotations

import uuid

import pytest

from shared.brokers.postgres import PostgresBroker
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
