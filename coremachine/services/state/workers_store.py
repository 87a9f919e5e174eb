"""Live workers: their heartbeats, and which queues some live worker consumes."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg_pool import AsyncConnectionPool

from coremachine.services.state.sql import Q
from coremachine.shared.domain.tasks import WorkerInfo

# Workers gone for longer than this are not listed unless asked.
DEFAULT_GONE_SECONDS = 3600


class WorkerStore:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    async def heartbeat(self, worker: WorkerInfo, ttl_seconds: int, stopping: bool) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                Q.heartbeat_worker,
                {
                    "worker_id": worker.worker_id,
                    "host": worker.host,
                    "queues": list(worker.queues),
                    "task_types": list(worker.task_types),
                    "concurrency": worker.concurrency,
                    "in_flight": worker.in_flight,
                    "version": worker.version,
                    "started_at": worker.started_at,
                    "ttl_seconds": ttl_seconds,
                    "stopping": stopping,
                },
            )

    async def list(self, gone_seconds: int = 0) -> list[WorkerInfo]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                Q.list_workers, {"gone_seconds": gone_seconds or DEFAULT_GONE_SECONDS}
            )
            rows = await cur.fetchall()
        return [
            WorkerInfo(
                worker_id=w,
                host=host,
                queues=tuple(queues),
                task_types=tuple(task_types),
                concurrency=concurrency,
                in_flight=in_flight,
                version=version,
                started_at=started,
                last_seen_at=seen,
                state=state,
            )
            for w, host, queues, task_types, concurrency, in_flight, version, started, seen, state in rows
        ]

    async def live_queues(self) -> set[str]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(Q.live_queues)
            return {row[0] for row in await cur.fetchall()}

    async def forget_old(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(Q.forget_old_workers)


def unserved_queue_reason(stages: Sequence[tuple[int, str]], live: set[str]) -> str:
    """Why a job waits when its running stages' queues have no live consumer ("" if they do)."""
    unserved = [(stage, queue) for stage, queue in stages if queue not in live]
    return "; ".join(
        f"stage {stage}'s tasks wait on queue {queue!r}, which no live worker consumes"
        for stage, queue in unserved
    )
