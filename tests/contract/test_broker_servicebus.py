"""The broker contract against Azure Service Bus (needs a real namespace).

Each test gets its own queue, created with the contract's lock duration and
max delivery count and deleted afterwards, so the connection string needs the
Manage right (RootManageSharedAccessKey or a policy with Manage).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from azure.servicebus.aio.management import ServiceBusAdministrationClient

from coremachine.shared.brokers.servicebus import ServiceBusBroker
from tests.contract.broker_suite import BrokerContract

CONNECTION_STRING = os.environ.get("SERVICEBUS_CONNECTION_STRING", "")

pytestmark = [
    pytest.mark.azure,
    pytest.mark.skipif(
        not CONNECTION_STRING,
        reason=(
            "set SERVICEBUS_CONNECTION_STRING to a namespace (Standard or Premium tier, "
            "connection string with the Manage right: the tests create and delete their "
            "own queues with duplicate detection and dead-lettering) to run"
        ),
    ),
]


class TestServiceBusBroker(BrokerContract):
    # Service Bus's shortest lock duration is 5 seconds.
    lock_duration = 5.0
    max_delivery_count = 3

    @pytest.fixture
    async def queue(self) -> AsyncIterator[str]:
        name = f"cm-contract-{uuid.uuid4().hex[:12]}"
        async with ServiceBusAdministrationClient.from_connection_string(
            CONNECTION_STRING
        ) as admin:
            await admin.create_queue(
                name,
                lock_duration=dt.timedelta(seconds=self.lock_duration),
                max_delivery_count=self.max_delivery_count,
                requires_duplicate_detection=True,
                duplicate_detection_history_time_window=dt.timedelta(minutes=1),
                dead_lettering_on_message_expiration=True,
                default_message_time_to_live=dt.timedelta(minutes=10),
            )
            try:
                yield name
            finally:
                await admin.delete_queue(name)

    @pytest.fixture
    async def broker(self, queue: str) -> AsyncIterator[ServiceBusBroker]:
        # Depends on `queue` so the queue outlives the broker's links.
        broker = await ServiceBusBroker.from_connection_string(CONNECTION_STRING).open()
        try:
            yield broker
        finally:
            await broker.close()
