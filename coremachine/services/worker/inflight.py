"""A task this worker runs: its message, lease, context signals and outcome."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from coremachine.app._context import CancelSignal
from coremachine.shared.broker import ReceivedMessage
from coremachine.shared.domain.tasks import ClaimedTask, TaskOutcome


@dataclass(eq=False)
class InFlight:
    message: ReceivedMessage
    task: ClaimedTask
    runner: asyncio.Task[None] | None = None
    outcome: TaskOutcome | None = None
    cancel: CancelSignal = field(default_factory=CancelSignal)
    # Loop time of the handler's last heartbeat (or of its start).
    last_heartbeat: float = 0.0
    # The traceparent of the attempt's span ("" when not traced).
    trace_context: str = ""

    @property
    def task_id(self) -> str:
        return self.task.task_id

    @property
    def lease_token(self) -> str:
        return self.task.lease_token

    @property
    def running(self) -> bool:
        return self.outcome is None
