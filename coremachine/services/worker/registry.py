"""Task handler registry: task type -> handler."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from coremachine.services.worker.context import TaskContext
from coremachine.services.worker.handlers import (
    container_contents,
    container_summary,
    diamond,
    hello_world,
    noop,
)
from coremachine.shared.task_types import TASK_TYPES

Handler = Callable[[dict[str, Any], TaskContext], Awaitable[Any] | Any]


class HandlerRegistryError(RuntimeError):
    """A task type has no handler (checked at start-up)."""


HANDLERS: Mapping[str, Handler] = {
    "hello_world_greeting": hello_world.greeting,
    "hello_world_reply": hello_world.reply,
    "noop": noop.noop,
    "diamond_split": diamond.split,
    "diamond_square": diamond.square,
    "diamond_sum": diamond.total,
    "container_summary_task": container_summary.summarize,
    "list_container_blobs": container_contents.list_blobs,
    "analyze_single_blob": container_contents.analyze_blob,
    "summarize_blob_inventory": container_contents.summarize_inventory,
}


def check_handlers(handlers: Mapping[str, Handler] = HANDLERS) -> None:
    """Fails fast unless every task type of the contract has a handler."""
    missing = sorted(TASK_TYPES - set(handlers))
    if missing:
        raise HandlerRegistryError(f"no handler for task types: {', '.join(missing)}")


async def run_handler(handler: Handler, params: dict[str, Any], ctx: TaskContext) -> Any:
    """Async handlers run on the loop; plain functions in a thread (they may block)."""
    if inspect.iscoroutinefunction(handler):
        return await handler(params, ctx)
    return await asyncio.to_thread(handler, params, ctx)
