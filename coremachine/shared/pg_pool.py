"""Connection pools that ride out a PostgreSQL restart, and stay bounded.

psycopg_pool already replaces a connection that comes back broken, and keeps
trying to reconnect (with backoff) while the server is down. What it cannot
know by itself is that an idle connection died while it sat in the pool:
after PostgreSQL restarts, every pooled connection would fail once, at its
next use. Its `check` callback closes that gap; ours costs a poll() of the
socket instead of a round trip per checkout: a healthy idle connection has
nothing to read, while one the server terminated (AdminShutdown on a fast
restart, end of file after a crash) is readable, and only then is it given
the library's full check (which discards it when dead).

While PostgreSQL is down the pool retries each lost connection with a
doubling delay (1, 2, 4, 8 s ...): left alone, it would reconnect many
seconds after the server is back. `reconnect_timeout` makes it give such a
slot up after a few seconds instead; the next request then starts a fresh
attempt at once, so the pool is back within about a second of the server.

`timeout` (how long a request waits for a connection) and `max_waiting` (how
many may wait at all) bound the queue in front of the database: beyond them a
request fails at once with PoolTimeout / TooManyRequests, which the gRPC edge
answers as UNAVAILABLE / RESOURCE_EXHAUSTED (grpc_errors.py).
"""

from __future__ import annotations

import select
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool


def _has_pending_input(conn: psycopg.AsyncConnection[Any]) -> bool:
    fd = conn.pgconn.socket
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    return bool(readable)


async def check_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """psycopg_pool `check=`: raises if an idle connection died (see the module docstring)."""
    if conn.closed or conn.broken or _has_pending_input(conn):
        await AsyncConnectionPool.check_connection(conn)


def open_pool(
    conninfo: str,
    *,
    kwargs: dict[str, Any] | Callable[[], Awaitable[dict[str, Any]]],
    min_size: int,
    max_size: int,
    timeout: float = 30.0,
    max_waiting: int = 0,
    reconnect_timeout: float = 5.0,
    name: str | None = None,
) -> AsyncConnectionPool:
    """A pool (not opened yet: `await pool.open(wait=True)`) with the checks above."""
    return AsyncConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs=kwargs,  # type: ignore[arg-type]
        check=check_connection,
        timeout=timeout,
        max_waiting=max_waiting,
        reconnect_timeout=reconnect_timeout,
        name=name,
    )
