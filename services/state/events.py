"""Append-only job events with a per-job sequence number.

The sequence is taken from `jobs.last_event_seq` under the job row lock the
caller already holds, so a reader that resumes "after seq N" never misses an
event committed later with a smaller number.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

from services.state.sql import Q
from shared.pg_json import records, values


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
    counts = Counter(e.job_id for e in events)
    cur = await conn.execute(
        Q.bump_event_seq, {"job_ids": list(counts), "counts": list(counts.values())}
    )
    last = dict(await cur.fetchall())
    next_seq = {job_id: last[job_id] - n + 1 for job_id, n in counts.items() if job_id in last}
    rows = []
    for event in events:
        if event.job_id not in next_seq:
            continue  # job deleted meanwhile
        rows.append(
            {
                "job_id": event.job_id,
                "seq": next_seq[event.job_id],
                "event_type": event.event_type,
                "stage": event.stage,
                "task_id": event.task_id,
                "data": event.data,
            }
        )
        next_seq[event.job_id] += 1
    await conn.execute(Q.insert_events, {"events": records(rows), "job_ids": values(next_seq)})
