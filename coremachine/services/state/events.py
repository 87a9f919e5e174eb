"""Append-only job events with a per-job sequence number.

The sequence is taken from `jobs.last_event_seq` under the job row lock the
caller already holds, so a reader that resumes "after seq N" never misses an
event committed later with a smaller number. A transaction's events of one
job are stored as one row (a run, migration 0012) and read back one by one.
One statement per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from coremachine.services.state.sql import Q
from coremachine.shared.pg_json import records

# The events that end a job (a redrive may start it again).
JOB_END_EVENTS = ("job_completed", "job_failed", "job_cancelled")


@dataclass(slots=True)
class NewEvent:
    job_id: str
    event_type: str
    stage: int | None = None
    task_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


async def append_events(conn: psycopg.AsyncConnection, events: list[NewEvent]) -> None:
    """Appends events; the caller holds the lock of every job involved."""
    if not events:
        return
    await conn.execute(
        Q.append_events,
        {
            "events": records(
                {
                    "job_id": e.job_id,
                    "event_type": e.event_type,
                    "stage": e.stage,
                    "task_id": e.task_id,
                    "data": e.data,
                }
                for e in events
            ),
            "end_events": list(JOB_END_EVENTS),
        },
    )
