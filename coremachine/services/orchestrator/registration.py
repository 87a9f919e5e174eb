"""Registers the definitions this orchestrator serves with the state service.

At start-up and then every ORCHESTRATOR_REGISTRATION_SECONDS (a heartbeat:
a registration expires after three intervals). Registering releases the
parked messages of jobs waiting for one of these definitions; stopping ends
the registration at once, so new messages for its definitions are parked
rather than sent to an orchestrator that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from coremachine.app._registry import Registry
from coremachine.shared.domain.jobs import JobTypeDefinition
from coremachine.shared.state_client import StateClient

log = logging.getLogger(__name__)


def definitions_of(registry: Registry) -> list[JobTypeDefinition]:
    return [
        JobTypeDefinition(
            jt.name, registry.fingerprint(jt.name), jt.parameters_schema(), jt.definition()
        )
        for jt in registry.job_types()
    ]


class Registration:
    def __init__(
        self,
        state: StateClient,
        registry: Registry,
        orchestrator_id: str,
        interval: float,
        version: str,
    ) -> None:
        self.state = state
        self.orchestrator_id = orchestrator_id
        self.interval = interval
        self.version = version
        self.definitions = definitions_of(registry)
        self.registered = asyncio.Event()

    async def register_once(self) -> int:
        released = await self.state.register_orchestrator(
            self.orchestrator_id,
            socket.gethostname(),
            self.version,
            self.definitions,
            ttl_seconds=max(int(self.interval * 3), 3),
        )
        self.registered.set()
        if released:
            log.info("released %d parked messages for definitions served here", released)
        return released

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.register_once()
            except Exception as exc:
                log.warning("registering the definitions served here failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.interval)
        try:
            await self.state.register_orchestrator(
                self.orchestrator_id, socket.gethostname(), self.version, [], 1, stopping=True
            )
        except Exception as exc:
            log.warning("ending the registration failed (it expires by itself): %s", exc)
