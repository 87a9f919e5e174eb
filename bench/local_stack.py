"""A stack of the services on a fresh database, for the load and soak tools."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from coremachine.shared.pg_urls import start_embedded
from coremachine.stack.processes import Ports, Stack

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def local_stack(
    name: str,
    replicas: Mapping[str, int] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Stack]:
    """DATABASE_URL (else the embedded PostgreSQL), a database of its own, free ports."""
    from tests.databases import create_database, drop_database

    server = os.environ.get("DATABASE_URL") or start_embedded(ROOT / ".data" / "bench-pg")
    database = create_database(server, prefix=f"cm_{name}")
    stack = Stack(
        database,
        Ports.free(),
        log_dir=ROOT / ".data" / f"{name}-logs",
        replicas=dict(replicas or {}),
        extra_env={"LOG_LEVEL": "WARNING", **(extra_env or {})},
    )
    try:
        with stop_on_sigterm():
            stack.up()
            yield stack
    finally:
        codes = stack.stop()
        drop_database(server, database)
        unclean = {name: code for name, code in codes.items() if code != 0}
        if unclean:
            raise RuntimeError(f"services did not stop cleanly: {unclean}")


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (`timeout`, `kill`) unwinds like Ctrl-C, so the stack is stopped:
    by default it ends the process at once and leaves the services running,
    orphaned, spending CPU under whatever runs next."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
