"""Background loops of a service, and what happens when one fails.

A service's work happens in loops beside its gRPC server: the queue
consumers, the outbox relay, the janitor, the event feed, the health
monitor, the gateway's HTTP server. None of them may end the process quietly:
a loop that raises, or returns while the process is not stopping, either

- restarts in this process after a backoff (`restart=True`, the default):
  for loops whose failure is transient by nature (a broker or database
  error that escaped the loop's own handling, a dependency restarting).
  Their state lives in the database and the broker, so a fresh run picks up
  where the last one stopped. A loop that keeps failing (`max_failures` runs
  in a row, each shorter than `healthy_after`) is not transient after all:
  the process exits non-zero so that its supervisor restarts it from scratch;
- or stops the process with a non-zero exit code (`restart=False`): for a
  loop that is the process's reason to exist and cannot be rebuilt in place
  (the gateway's HTTP server, bound to its port).

Either way the failure is logged with its traceback, and while a loop is
down the service's gRPC health says NOT_SERVING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
# Called with (loop name, None when running / why it is down).
Reporter = Callable[[str, str | None], Awaitable[None]]

# The process's exit code when a loop could not go on (EX_SOFTWARE).
EXIT_LOOP_FAILED = 70


class LoopFailed(Exception):
    """A loop failed for good: the process must exit non-zero."""


@dataclass(frozen=True)
class Background:
    """A background loop: `run(stopping)` must return soon after `stopping` is set."""

    run: Loop
    name: str = ""
    restart: bool = True
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    max_failures: int = 8
    healthy_after: float = 60.0

    @classmethod
    def of(cls, loop: Loop | Background) -> Background:
        """A plain coroutine function is a restartable loop named after it."""
        if isinstance(loop, Background):
            return loop
        return cls(loop)

    @property
    def label(self) -> str:
        return self.name or getattr(self.run, "__qualname__", None) or repr(self.run)


async def supervise(loop: Background, stopping: asyncio.Event, report: Reporter) -> None:
    """Runs the loop until stopping is set, restarting it as its policy says.

    Raises LoopFailed when the loop fails for good.
    """
    failures = 0
    backoff = loop.initial_backoff
    clock = asyncio.get_running_loop().time
    while not stopping.is_set():
        started = clock()
        try:
            await loop.run(stopping)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error: BaseException | None = exc
        else:
            if stopping.is_set():
                return
            error = None
        why = f"{type(error).__name__}: {error}" if error is not None else "returned early"
        await report(loop.label, why)
        if clock() - started >= loop.healthy_after:
            failures, backoff = 0, loop.initial_backoff
        failures += 1
        if not loop.restart:
            log.error("background loop %s failed: %s", loop.label, why, exc_info=error)
            raise LoopFailed(f"{loop.label}: {why}") from error
        if failures >= loop.max_failures:
            log.error(
                "background loop %s failed %d times in a row: %s",
                loop.label,
                failures,
                why,
                exc_info=error,
            )
            raise LoopFailed(f"{loop.label} keeps failing: {why}") from error
        log.error(
            "background loop %s failed (%s); restarting in %.1fs (failure %d of %d)",
            loop.label,
            why,
            backoff,
            failures,
            loop.max_failures,
            exc_info=error,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), backoff)
        backoff = min(backoff * 2, loop.max_backoff)
        if not stopping.is_set():
            log.info("background loop %s restarting", loop.label)
            await report(loop.label, None)
