"""PostgreSQL connection strings: the embedded server and per-database URLs."""

from __future__ import annotations

import warnings
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo


def with_dbname(conninfo: str, dbname: str) -> str:
    """The same server and credentials, another database."""
    params = conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return make_conninfo(**params)  # type: ignore[arg-type]


def start_embedded(datadir: Path) -> str:
    """Starts (or reuses) the embedded PostgreSQL in datadir; returns its URL.

    pgserver keeps the server running while any process that asked for it is
    alive, and stops it when the last one exits.
    """
    datadir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        import pgserver  # imported lazily: only needed without DATABASE_URL

        server = pgserver.get_server(datadir, cleanup_mode="stop")
    return str(server.get_uri())
