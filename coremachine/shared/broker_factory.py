"""Builds the configured broker adapter (the one place that picks it)."""

from __future__ import annotations

from coremachine.shared.broker import Broker
from coremachine.shared.settings import CommonSettings


class BrokerConfigError(ValueError):
    """The broker settings are incomplete."""


async def open_broker(settings: CommonSettings, default_database_url: str | None = None) -> Broker:
    """Opens the broker chosen by BROKER, checking its settings first."""
    if settings.broker == "postgres":
        from coremachine.shared.brokers.postgres import PostgresBroker

        url = settings.broker_database_url or default_database_url
        if not url:
            raise BrokerConfigError("BROKER=postgres needs BROKER_DATABASE_URL (or DATABASE_URL)")
        return await PostgresBroker(
            url,
            lock_duration=settings.broker_lock_seconds,
            max_delivery_count=settings.broker_max_delivery_count,
            priority_aging_seconds=settings.broker_priority_aging_seconds,
        ).open()
    from coremachine.shared.brokers.servicebus import ServiceBusBroker

    bands = {"priority_bands": settings.servicebus_priority_bands}
    if settings.servicebus_connection_string:
        return ServiceBusBroker.from_connection_string(
            settings.servicebus_connection_string, **bands
        )
    if settings.servicebus_namespace:
        return ServiceBusBroker.from_namespace(settings.servicebus_namespace, **bands)
    raise BrokerConfigError(
        "BROKER=servicebus needs SERVICEBUS_CONNECTION_STRING or SERVICEBUS_NAMESPACE"
    )
