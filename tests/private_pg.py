"""A PostgreSQL server of a test's own, which the test may restart or crash.

Never the shared server (DATABASE_URL): other tests and other people use it.
The server is the embedded one (pgserver's binaries, so it works on a
machine with nothing but Python), in its own data directory and socket
directory; `pg_ctl restart` reuses the options it was started with, so its
URL stays the same across restarts.
"""

from __future__ import annotations

import shutil
import time
import uuid
import warnings

import psycopg

from tests.databases import ROOT


class PrivatePostgres:
    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            import pgserver

        # Under the repository (like the shared embedded server): a path the
        # server's own user can reach when tests run as root.
        self.datadir = ROOT / ".data" / f"private-pg-{uuid.uuid4().hex[:8]}"
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.datadir, cleanup_mode="delete")
        self.url = str(self._server.get_uri())

    def _pg_ctl(self, *args: str) -> None:
        from pgserver import _commands

        _commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-t", "60", *args],
            pgdata=self.datadir,
            user=self._server.system_user,
            timeout=90,
        )

    def restart(self, mode: str = "fast") -> None:
        """`pg_ctl restart -m fast|immediate` (immediate: a crash and recovery)."""
        self._pg_ctl("-m", mode, "restart")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "stop")

    def start(self) -> None:
        # restart on a stopped server starts it with its saved options.
        self._pg_ctl("restart")

    def is_up(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def close(self) -> None:
        try:
            self._server.cleanup()
        finally:
            # cleanup() deletes the directory once the server is stopped; be sure.
            deadline = time.monotonic() + 10
            while self.datadir.exists() and time.monotonic() < deadline:
                shutil.rmtree(self.datadir, ignore_errors=True)
