"""Test databases: one server per run, a migrated template, a clone per test.

Uses DATABASE_URL when set (CI: the machine's PostgreSQL), otherwise starts
the embedded PostgreSQL (pgserver) under .data/test-pg.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import psycopg

from coremachine.shared.pg_urls import start_embedded, with_dbname

ROOT = Path(__file__).resolve().parents[1]


def server_url() -> str:
    """The admin connection string of the test server."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(ROOT / ".data" / "test-pg")


def create_database(admin_url: str, template: str | None = None, prefix: str = "cm_test") -> str:
    """Creates a uniquely named database (optionally cloned); returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return with_dbname(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    """Drops a test database, disconnecting whoever is still connected."""
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
