"""Job priorities and the priority bands of brokers without priorities. Pure: no I/O.

A job's priority is 0..9, higher first, 5 normal; every message of the job
(its stages and tasks) carries it. The PostgreSQL queue orders by it with
aging (nothing starves: shared/brokers/postgres_sql/migrations/0003); Service
Bus has no priorities, so a queue is split into bands, one queue each, that
workers receive from in weighted turns (docs/flow-control.md).
"""

from __future__ import annotations

MIN_PRIORITY = 0
MAX_PRIORITY = 9
DEFAULT_PRIORITY = 5

# Band -> (lowest priority of the band, receive weight). The normal band keeps
# the queue's own name, so a deployment without band queues loses nothing.
BANDS: dict[str, tuple[int, int]] = {"high": (7, 6), "normal": (3, 3), "low": (0, 1)}


def check_priority(priority: int) -> int:
    if not isinstance(priority, int) or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority must be an integer {MIN_PRIORITY}..{MAX_PRIORITY}")
    return priority


def band_of(priority: int) -> str:
    """The band a priority falls in: high (7-9), normal (3-6) or low (0-2)."""
    for band, (lowest, _) in BANDS.items():
        if priority >= lowest:
            return band
    return "low"


def band_queue(queue: str, band: str) -> str:
    """The queue that holds a band's messages: `tasks-high`, `tasks`, `tasks-low`."""
    return queue if band == "normal" else f"{queue}-{band}"
