"""Deterministic job and task ids. Pure: no I/O."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def job_id_for(job_type: str, identity: Mapping[str, Any]) -> str:
    """SHA-256 of the job type and its identity parameters (64 hex chars).

    The job type is always part of the hash (the reference left it out for
    some jobs, so two job types with equal parameters collided).
    """
    payload = canonical_json({"job_type": job_type, "parameters": dict(identity)})
    return hashlib.sha256(payload.encode()).hexdigest()


def task_id_for(job_id: str, stage: int, task_index: int) -> str:
    """A task id unique across jobs: the full job id, the stage and the index.

    (The reference used an 8-character job prefix, which collides.)
    """
    return f"{job_id}-s{stage}-{task_index}"


def scheduled_job_id(schedule_uid: str, tick_at: dt.datetime) -> str:
    """The job id of a schedule's tick: the same for whoever fires it, so that
    a tick fired twice (two replicas, a retried submit) is one job."""
    tick = tick_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    payload = canonical_json({"schedule": schedule_uid, "tick": tick})
    return hashlib.sha256(payload.encode()).hexdigest()
