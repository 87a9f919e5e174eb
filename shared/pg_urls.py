"""PostgreSQL connection strings: the embedded server and per-database URLs."""

from __future__ import annotations

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
    import pgserver  # imported lazily: only needed without DATABASE_URL

    datadir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(datadir, cleanup_mode="stop")
    return str(server.get_uri())
