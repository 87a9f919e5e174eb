"""The broker contract against the in-memory adapter (what unit tests of consumers use)."""

from __future__ import annotations

import uuid

import pytest

from coremachine.shared.brokers.memory import MemoryBroker
from tests.contract.broker_suite import BrokerContract


class TestMemoryBroker(BrokerContract):
    @pytest.fixture
    async def broker(self):
        return MemoryBroker(
            lock_duration=self.lock_duration, max_delivery_count=self.max_delivery_count
        )

    @pytest.fixture
    def queue(self) -> str:
        return f"q_{uuid.uuid4().hex[:8]}"
