"""Task types: a name, the handler that runs it, and the queue its tasks go to."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coremachine.app._context import TaskContext

# A handler takes the task's parameters, and the task's context if it asks for it.
Handler = (
    Callable[[dict[str, Any], "TaskContext"], Awaitable[Any] | Any]
    | Callable[[dict[str, Any]], Awaitable[Any] | Any]
)


@dataclass(frozen=True, slots=True)
class TaskType:
    """A task type. `@app.task` returns one; calling it calls the handler
    (so a handler stays testable as a plain function)."""

    name: str
    handler: Handler | None
    queue: str | None = None
    # The app that defines it (for error messages naming the culprit).
    app: str = ""
    takes_context: bool = field(default=True)

    @property
    def is_async(self) -> bool:
        return self.handler is not None and inspect.iscoroutinefunction(self.handler)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.handler is None:
            raise TypeError(f"task type {self.name!r} is declared here but handled elsewhere")
        return self.handler(*args, **kwargs)

    def invoke(self, params: dict[str, Any], ctx: TaskContext) -> Any:
        """Calls the handler the way it was written: (params, ctx) or (params)."""
        assert self.handler is not None
        if self.takes_context:
            return self.handler(params, ctx)  # type: ignore[call-arg]
        return self.handler(params)  # type: ignore[call-arg]


def takes_context(handler: Callable[..., Any]) -> bool:
    """Whether a handler accepts a second positional argument (the context)."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # builtins without a signature: assume (params, ctx)
        return True
    positional = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    if has_varargs or len(positional) >= 2:
        return True
    if len(positional) == 1:
        return False
    raise TypeError(
        f"handler {getattr(handler, '__qualname__', handler)!r} must take the task's"
        " parameters: def handler(params) or def handler(params, ctx)"
    )
