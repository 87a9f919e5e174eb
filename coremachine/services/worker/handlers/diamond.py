"""Handlers of the diamond job (single -> per item -> fan-in)."""

from __future__ import annotations

from typing import Any

from coremachine.services.worker.context import TaskContext


async def split(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    return {"items": list(range(1, int(params["count"]) + 1))}


async def square(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    value = int(params["value"])
    return {"value": value, "square": value * value}


async def total(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    previous = await ctx.resolve_previous_results(params.get("previous_results"))
    squares = [p["result"]["square"] for p in previous if p.get("result")]
    return {"sum": sum(squares), "count": len(squares)}
