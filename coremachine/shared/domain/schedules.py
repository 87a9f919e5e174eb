"""Schedules: when they tick, and which ticks fire after downtime. Pure: no I/O.

Cron expressions are parsed by `cronsim` (5 fields, or 6 with seconds
first), evaluated in the schedule's IANA time zone: a local time that a
daylight-saving change skips fires right after the change, one that it
repeats fires once; expressions with wildcard hours keep their real-time
rhythm through the change. Interval schedules tick at anchor + k * interval.

A claim (the state service, under the schedule row's lock) looks at the
ticks due since the last one handled: the latest is on time if it is at
most `grace_seconds` late; the others were missed (downtime), and the
catch-up policy says which of them run: none (skip), one for all
(run_once), or each, the latest `catch_up_limit` (run_each).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from coremachine.shared.domain.priorities import DEFAULT_PRIORITY, check_priority

CATCH_UP_POLICIES = ("skip", "run_once", "run_each")
OVERLAP_POLICIES = ("skip", "allow", "cancel_previous")
SCHEDULE_NAME_PATTERN = r"^[a-z][a-z0-9_.-]{0,99}$"
# Missed ticks are counted up to this many (a per-second schedule down for a
# day has 86,400); beyond it the count says "at least".
MAX_COUNTED_MISSES = 100_000
MIN_INTERVAL_SECONDS = 1.0
MAX_INTERVAL_SECONDS = 10 * 366 * 86400.0

_NAME = re.compile(SCHEDULE_NAME_PATTERN)


class ScheduleError(ValueError):
    """A schedule that cannot be: the message names the field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule as the services exchange it."""

    name: str
    job_type: str
    parameters: dict[str, Any] = field(default_factory=dict)
    priority: int = DEFAULT_PRIORITY
    cron: str | None = None
    timezone: str = "UTC"
    interval_seconds: float | None = None
    catch_up: str = "skip"
    catch_up_limit: int = 10
    grace_seconds: float = 60.0
    overlap: str = "skip"
    paused: bool = False
    description: str = ""
    next_fire_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    uid: str = ""
    anchor_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Firing:
    """One firing (or missed ticks) of a schedule; with what to submit."""

    schedule: str
    tick_at: dt.datetime
    kind: str  # "tick", "catch_up", "manual"
    outcome: str  # "pending", "submitted", "failed", "skipped", "missed"
    job_id: str = ""
    detail: str = ""
    missed_count: int = 0
    missed_until: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    job_type: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    priority: int = DEFAULT_PRIORITY


@dataclass(frozen=True, slots=True)
class DueTicks:
    """What a claim does with the ticks due since the last one handled."""

    # Ticks to fire, oldest first, with their kind ("tick" or "catch_up").
    fire: list[tuple[dt.datetime, str]]
    # Ticks not run: (first, last, count); count may be MAX_COUNTED_MISSES+.
    missed: tuple[dt.datetime, dt.datetime, int] | None
    # The first tick after now: where the schedule goes on.
    next_fire_at: dt.datetime


def check_schedule(schedule: Schedule) -> Schedule:
    """Validates a new schedule; raises ScheduleError naming the field."""
    if not _NAME.match(schedule.name or ""):
        raise ScheduleError(
            "name: lower-case letters, digits, '_', '-', '.', starting with a letter,"
            " at most 100 characters",
            "name",
        )
    if (schedule.cron is None) == (schedule.interval_seconds is None):
        raise ScheduleError("give either cron or interval_seconds", "cron")
    for name in ("cron", "timezone", "description", "job_type"):
        if "\x00" in (getattr(schedule, name) or ""):
            raise ScheduleError(f"{name}: the NUL character is not allowed", name)
    zone(schedule.timezone)
    if schedule.cron is not None:
        _cron(schedule.cron, dt.datetime.now(dt.UTC))
    elif not (
        math.isfinite(schedule.interval_seconds or 0)
        and MIN_INTERVAL_SECONDS <= (schedule.interval_seconds or 0) <= MAX_INTERVAL_SECONDS
    ):
        raise ScheduleError(
            f"interval_seconds: {MIN_INTERVAL_SECONDS:g} to {MAX_INTERVAL_SECONDS:g}",
            "interval_seconds",
        )
    if schedule.catch_up not in CATCH_UP_POLICIES:
        raise ScheduleError(f"catch_up: one of {', '.join(CATCH_UP_POLICIES)}", "catch_up")
    if schedule.overlap not in OVERLAP_POLICIES:
        raise ScheduleError(f"overlap: one of {', '.join(OVERLAP_POLICIES)}", "overlap")
    if not 1 <= schedule.catch_up_limit <= 1000:
        raise ScheduleError("catch_up_limit: 1..1000", "catch_up_limit")
    if not (math.isfinite(schedule.grace_seconds) and 0 <= schedule.grace_seconds <= 1e9):
        raise ScheduleError("grace_seconds: 0 to 1e9", "grace_seconds")
    if len(schedule.description) > 1000:
        raise ScheduleError("description: at most 1000 characters", "description")
    try:
        check_priority(schedule.priority)
    except ValueError as exc:
        raise ScheduleError(str(exc), "priority") from None
    return schedule


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"timezone: unknown time zone {name!r}", "timezone") from None


def _cron(expression: str, start: dt.datetime, reverse: bool = False) -> CronSim:
    if len(expression.split()) not in (5, 6):
        raise ScheduleError(
            "cron: 5 fields (minute hour day month weekday) or 6 (seconds first)", "cron"
        )
    try:
        return CronSim(expression, start, reverse=reverse)
    except (CronSimError, ValueError, KeyError, IndexError) as exc:
        raise ScheduleError(f"cron: {exc}", "cron") from None


def ticks_after(schedule: Schedule, after: dt.datetime) -> Iterator[dt.datetime]:
    """The schedule's ticks strictly after `after`, in UTC, in order."""
    if schedule.cron is not None:
        local = after.astimezone(zone(schedule.timezone))
        for tick in _cron(schedule.cron, local):
            yield tick.astimezone(dt.UTC)
        return
    interval = float(schedule.interval_seconds or 0)
    anchor = schedule.anchor_at or after
    k = max(0, math.floor((after - anchor).total_seconds() / interval) + 1)
    while True:
        tick = anchor + dt.timedelta(seconds=k * interval)
        if tick > after:
            yield tick
        k += 1


def next_tick(schedule: Schedule, after: dt.datetime) -> dt.datetime:
    return next(ticks_after(schedule, after))


def first_tick(schedule: Schedule, now: dt.datetime) -> dt.datetime:
    """Where a new (or resumed) schedule starts: its first tick after now."""
    return next_tick(schedule, now)


def due_ticks(schedule: Schedule, next_fire_at: dt.datetime, now: dt.datetime) -> DueTicks:
    """Applies the catch-up policy to the ticks in [next_fire_at, now]."""
    keep = schedule.catch_up_limit if schedule.catch_up == "run_each" else 1
    # One more than can run, so the last tick not run is known.
    latest: deque[dt.datetime] = deque(maxlen=keep + 2)
    first: dt.datetime | None = None
    count = 0
    ticks = ticks_after(schedule, next_fire_at - dt.timedelta(microseconds=1))
    for tick in ticks:
        if tick > now:
            break
        if first is None:
            first = tick
        latest.append(tick)
        count += 1
        if count >= MAX_COUNTED_MISSES:
            # A long outage of a fast schedule: go on from the latest ticks.
            for tick in _latest_before(schedule, now, keep + 2):
                latest.append(tick)
            count += keep + 2
            tick = next_tick(schedule, now)
            break
    else:  # pragma: no cover - schedules tick forever
        raise AssertionError("a schedule without a next tick")
    following = tick if tick > now else next_tick(schedule, now)
    due = list(latest)
    if not due:
        return DueTicks([], None, following)
    on_time = due[-1] if (now - due[-1]).total_seconds() <= schedule.grace_seconds else None
    late = due[:-1] if on_time is not None else due
    missed_count = count - (1 if on_time is not None else 0)
    run: list[dt.datetime] = []
    if schedule.catch_up == "run_once" and late:
        run = late[-1:]
    elif schedule.catch_up == "run_each":
        run = late[-schedule.catch_up_limit :]
    fire = [(t, "catch_up") for t in run] + ([(on_time, "tick")] if on_time is not None else [])
    not_run = missed_count - len(run)
    missed = None
    if not_run > 0:
        assert first is not None
        last_not_run = late[-len(run) - 1] if run else late[-1]
        missed = (first, last_not_run, not_run)
    return DueTicks(fire, missed, following)


def _latest_before(schedule: Schedule, now: dt.datetime, n: int) -> list[dt.datetime]:
    if schedule.cron is not None:
        local = now.astimezone(zone(schedule.timezone)) + dt.timedelta(seconds=1)
        found = []
        for tick in _cron(schedule.cron, local, reverse=True):
            found.append(tick.astimezone(dt.UTC))
            if len(found) >= n:
                break
        return sorted(t for t in found if t <= now)
    interval = float(schedule.interval_seconds or 1)
    anchor = schedule.anchor_at or now
    k = math.floor((now - anchor).total_seconds() / interval)
    return [anchor + dt.timedelta(seconds=(k - i) * interval) for i in reversed(range(n))]
