"""The benchmark's handler: does nothing, so only orchestration is measured."""

from __future__ import annotations

from typing import Any

from coremachine.services.worker.context import TaskContext


async def noop(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return {}
