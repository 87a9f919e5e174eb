"""Handlers of the hello_world job."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from coremachine.services.worker.context import TaskContext
from coremachine.shared.task_errors import RetryableError


async def greeting(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    index = int(params["index"])
    await _simulate_work(params)
    if random.random() < float(params.get("failure_rate", 0.0)):
        raise RetryableError(f"STOCHASTIC FAILURE in greeting {index}")
    return {"greeting": f"{params['message']} from task {index}!", "task_index": index}


async def reply(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    index = int(params["index"])
    await _simulate_work(params)
    return {"reply": f"Replying to: {params.get('greeting')}", "task_index": index}


async def _simulate_work(params: dict[str, Any]) -> None:
    delay_ms = int(params.get("delay_ms", 0))
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
