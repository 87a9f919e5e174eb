"""Schedules and their firings: each tick fired once, whatever the replicas.

A tick is claimed in one transaction: the due schedule's row is locked (FOR
UPDATE SKIP LOCKED: one claimer per schedule at a time, across every state
replica), the catch-up and overlap policies decide what fires, the firings
are inserted (primary key: schedule and tick) and next_fire_at moves on. The
claiming orchestrator then submits each firing's job under the id derived
from the schedule's uid and the tick (shared/domain/ids.py), through its
usual submit path (the job type's parameter model, stage 1 planned), and
records the outcome. An orchestrator that stops in between leaves its
firings pending; after their lease they are handed out again, and the same
job id makes a second submit the same job.

Lock order: schedules rows, then jobs rows (a claim may cancel the previous
run: overlap "cancel_previous").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.locks import lock_job
from coremachine.services.state.sql import Q
from coremachine.services.state.store import StateStore
from coremachine.shared.domain.ids import scheduled_job_id
from coremachine.shared.domain.schedules import (
    Firing,
    Schedule,
    ScheduleError,
    check_schedule,
    due_ticks,
    first_tick,
)
from coremachine.shared.domain.statuses import JobStatus
from coremachine.shared.errors import Conflict, InvalidArgument, NotFound
from coremachine.shared.pg_json import records

MAX_LIST = 1000


def _schedule(row: dict[str, Any]) -> Schedule:
    return Schedule(
        name=row["name"],
        job_type=row["job_type"],
        parameters=row["parameters"],
        priority=row["priority"],
        cron=row["cron"],
        timezone=row["timezone"],
        interval_seconds=row["interval_seconds"],
        catch_up=row["catch_up"],
        catch_up_limit=row["catch_up_limit"],
        grace_seconds=row["grace_seconds"],
        overlap=row["overlap"],
        paused=row["paused"],
        description=row["description"],
        next_fire_at=row["next_fire_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        uid=str(row["uid"]),
        anchor_at=row["anchor_at"],
    )


def _firing(row: dict[str, Any], schedule: Schedule | None = None) -> Firing:
    return Firing(
        schedule=row["schedule"],
        tick_at=row["tick_at"],
        kind=row["kind"],
        outcome=row["outcome"],
        job_id=row["job_id"] or "",
        detail=row["detail"],
        missed_count=row["missed_count"] or 0,
        missed_until=row["missed_until"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        job_type=schedule.job_type if schedule else "",
        parameters=schedule.parameters if schedule else {},
        priority=schedule.priority if schedule else 5,
    )


class ScheduleStore:
    def __init__(self, pool: AsyncConnectionPool, store: StateStore) -> None:
        self.pool = pool
        self.store = store

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self.pool.connection() as conn, conn.transaction():
            yield conn

    # -- the schedules ---------------------------------------------------------------

    async def create(self, schedule: Schedule) -> Schedule:
        """Creates a schedule (its job type and parameters checked by the caller)."""
        try:
            check_schedule(schedule)
        except ScheduleError as exc:
            raise InvalidArgument(str(exc), exc.field) from None
        now = dt.datetime.now(dt.UTC)
        anchored = Schedule(**{**_fields(schedule), "anchor_at": now})
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                Q.insert_schedule,
                {
                    "name": schedule.name,
                    "job_type": schedule.job_type,
                    "parameters": json.dumps(schedule.parameters),
                    "priority": schedule.priority,
                    "cron": schedule.cron,
                    "timezone": schedule.timezone,
                    "interval_seconds": schedule.interval_seconds,
                    "catch_up": schedule.catch_up,
                    "catch_up_limit": schedule.catch_up_limit,
                    "grace_seconds": schedule.grace_seconds,
                    "overlap": schedule.overlap,
                    "paused": schedule.paused,
                    "description": schedule.description,
                    "anchor_at": now,
                    "next_fire_at": first_tick(anchored, now),
                },
            )
            row = await cur.fetchone()
        if row is None:
            raise Conflict(f"schedule {schedule.name!r} exists already")
        return _schedule(row)

    async def get(self, name: str) -> Schedule:
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q.get_schedule, {"name": name})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"schedule {name!r} not found")
        return _schedule(row)

    async def list_schedules(self, limit: int, page_token: str) -> tuple[list[Schedule], str]:
        limit = max(1, min(limit or 100, MAX_LIST))
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q.list_schedules, {"after": page_token or None, "limit": limit})
            rows = await cur.fetchall()
        found = [_schedule(r) for r in rows]
        return found, (found[-1].name if len(found) == limit else "")

    async def set_paused(self, name: str, paused: bool) -> Schedule:
        """Pauses, or resumes from the next tick after now (ticks while paused
        are not caught up: a pause is a decision, not downtime)."""
        async with self._transaction() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q.lock_schedule, {"name": name})
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"schedule {name!r} not found")
            resume_at = None
            if not paused and row["paused"]:
                resume_at = first_tick(_schedule(row), dt.datetime.now(dt.UTC))
            await cur.execute(
                Q.set_schedule_paused,
                {"name": name, "paused": paused, "next_fire_at": resume_at},
            )
            updated = await cur.fetchone()
        assert updated is not None
        return _schedule(updated)

    async def delete(self, name: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q.delete_schedule, {"name": name})
            return await cur.fetchone() is not None

    # -- firing ------------------------------------------------------------------------

    async def trigger(self, name: str, orchestrator_id: str, lease_seconds: int) -> Firing:
        """A manual firing now, claimed by the caller (overlap is the caller's
        choice here: a person asked for it)."""
        async with self._transaction() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(Q.lock_schedule, {"name": name})
            row = await cur.fetchone()
            if row is None:
                raise NotFound(f"schedule {name!r} not found")
            schedule = _schedule(row)
            now = dt.datetime.now(dt.UTC)
            inserted = await self._insert_firings(
                conn,
                [_pending(schedule, now, "manual", orchestrator_id, "triggered by request")],
                lease_seconds,
            )
        return _firing(inserted[0], schedule)

    async def claim_due(
        self, orchestrator_id: str, job_types: Sequence[str], limit: int, lease_seconds: int
    ) -> tuple[list[Firing], float | None]:
        """The firings to submit now, and the seconds until the next tick due."""
        types = sorted(set(job_types))
        if not types:
            return [], None
        limit = max(1, min(limit or 50, 500))
        firings: list[Firing] = []
        async with self._transaction() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                Q.reclaim_firings,
                {
                    "job_types": types,
                    "limit": limit,
                    "claimed_by": orchestrator_id,
                    "lease_seconds": lease_seconds,
                },
            )
            stale = await cur.fetchall()
            for row in stale:
                firings.append(_firing(row, await self._schedule_of(conn, row["schedule"])))
            await cur.execute(Q.lock_due_schedules, {"job_types": types, "limit": limit})
            for row in await cur.fetchall():
                firings += await self._claim_schedule(
                    conn, _schedule(row), orchestrator_id, lease_seconds
                )
            await cur.execute(Q.next_schedule_due, {"job_types": types})
            due = await cur.fetchone()
        next_at = due["min"] if due else None
        wait = (next_at - dt.datetime.now(dt.UTC)).total_seconds() if next_at else None
        return firings, wait

    async def _schedule_of(self, conn: psycopg.AsyncConnection, name: str) -> Schedule:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(Q.get_schedule, {"name": name})
        row = await cur.fetchone()
        assert row is not None  # firings go with their schedule (ON DELETE CASCADE)
        return _schedule(row)

    async def _claim_schedule(
        self,
        conn: psycopg.AsyncConnection,
        schedule: Schedule,
        orchestrator_id: str,
        lease_seconds: int,
    ) -> list[Firing]:
        """The schedule's row is locked: decides its due ticks and moves it on."""
        now = dt.datetime.now(dt.UTC)
        assert schedule.next_fire_at is not None
        due = due_ticks(schedule, schedule.next_fire_at, now)
        rows: list[dict[str, Any]] = []
        if due.missed is not None:
            first, last, count = due.missed
            rows.append(
                {
                    "schedule": schedule.name,
                    "tick_at": first.isoformat(),
                    "kind": "tick",
                    "outcome": "missed",
                    "detail": f"{count} tick(s) missed while nothing ran"
                    f" (catch-up: {schedule.catch_up})",
                    "missed_count": count,
                    "missed_until": last.isoformat(),
                }
            )
        if due.fire:
            skipped = await self._apply_overlap(conn, schedule)
            for tick, kind in due.fire:
                if skipped:
                    rows.append(
                        {
                            "schedule": schedule.name,
                            "tick_at": tick.isoformat(),
                            "kind": kind,
                            "outcome": "skipped",
                            "detail": skipped,
                        }
                    )
                else:
                    rows.append(_pending(schedule, tick, kind, orchestrator_id))
        inserted = await self._insert_firings(conn, rows, lease_seconds)
        await conn.execute(
            Q.advance_schedule, {"name": schedule.name, "next_fire_at": due.next_fire_at}
        )
        return [_firing(r, schedule) for r in inserted if r["outcome"] == "pending"]

    async def _apply_overlap(self, conn: psycopg.AsyncConnection, schedule: Schedule) -> str:
        """The overlap policy against the previous run: "" to fire, else why not."""
        if schedule.overlap == "allow":
            return ""
        cur = await conn.execute(Q.previous_run, {"name": schedule.name})
        previous = await cur.fetchone()
        if previous is None:
            return ""
        _tick, outcome, job_id, status = previous
        running = outcome == "pending" or (status is not None and not JobStatus(status).is_terminal)
        if not running:
            return ""
        if schedule.overlap == "skip":
            return f"the previous run (job {job_id}) is still going (overlap: skip)"
        if status is not None:  # cancel_previous, and its job exists
            job = await lock_job(conn, job_id)
            await self.store.cancel_locked(
                conn, job, f"cancelled by schedule {schedule.name!r}: a new run started"
            )
        return ""

    async def _insert_firings(
        self, conn: psycopg.AsyncConnection, rows: list[dict[str, Any]], lease_seconds: int
    ) -> list[dict[str, Any]]:
        if not rows:
            return []
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute(
            Q.insert_firings, {"firings": records(rows), "lease_seconds": lease_seconds}
        )
        return await cur.fetchall()

    async def record(
        self, schedule: str, tick_at: dt.datetime, outcome: str, job_id: str, detail: str
    ) -> bool:
        if outcome not in ("submitted", "failed"):
            raise InvalidArgument("outcome: submitted or failed", "outcome")
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q.record_firing,
                {
                    "schedule": schedule,
                    "tick_at": tick_at,
                    "outcome": outcome,
                    "job_id": job_id or None,
                    "detail": detail[:2000],
                },
            )
            return await cur.fetchone() is not None

    async def firings(self, name: str, limit: int) -> list[Firing]:
        await self.get(name)
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                Q.list_firings, {"name": name, "limit": max(1, min(limit or 100, MAX_LIST))}
            )
            return [_firing(r) for r in await cur.fetchall()]


def _pending(
    schedule: Schedule, tick: dt.datetime, kind: str, orchestrator_id: str, detail: str = ""
) -> dict[str, Any]:
    return {
        "schedule": schedule.name,
        "tick_at": tick.isoformat(),
        "kind": kind,
        "outcome": "pending",
        "job_id": scheduled_job_id(schedule.uid, tick),
        "detail": detail,
        "claimed_by": orchestrator_id,
    }


def _fields(schedule: Schedule) -> dict[str, Any]:
    return {name: getattr(schedule, name) for name in Schedule.__dataclass_fields__}
