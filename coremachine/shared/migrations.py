"""Forward-only numbered SQL migrations, recorded in a ledger table.

Files are named `NNNN_description.sql` and applied in order, each in its own
transaction, under a session advisory lock so that two processes starting at
once never apply the same migration twice. An applied migration is never
edited: its checksum is recorded and a mismatch stops start-up.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from coremachine.shared.advisory_locks import migrations_lock

_FILENAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database schema does not match the migrations shipped with the code."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    """Reads the numbered migrations of a directory, checking the numbering."""
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _FILENAME.match(path.name)
        if not match:
            raise MigrationError(f"badly named migration file: {path.name}")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected:04d} is missing in {directory}")
    return found


@dataclass(frozen=True, slots=True)
class Ledger:
    """Where a set of migrations records what it applied (schema.table)."""

    schema: str
    table: str = "schema_migrations"

    def ident(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.table))


async def _ensure_ledger(conn: psycopg.AsyncConnection, ledger: Ledger) -> None:
    await conn.execute(
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(ledger.schema))
    )
    await conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY, name text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        ).format(ledger.ident())
    )


async def _applied(conn: psycopg.AsyncConnection, ledger: Ledger) -> dict[int, str]:
    cur = await conn.execute(sql.SQL("SELECT version, checksum FROM {}").format(ledger.ident()))
    return {version: checksum for version, checksum in await cur.fetchall()}


def _check_checksums(applied: dict[int, str], migrations: list[Migration]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was edited after it was"
                " applied; add a new migration instead"
            )


async def migrate(conninfo: str, directory: Path, ledger: Ledger) -> list[int]:
    """Applies pending migrations; returns the versions applied by this call."""
    migrations = load_migrations(directory)
    applied_now: list[int] = []
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        key = migrations_lock(f"{ledger.schema}.{ledger.table}")
        await conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            await _ensure_ledger(conn, ledger)
            applied = await _applied(conn, ledger)
            _check_checksums(applied, migrations)
            for migration in migrations:
                if migration.version in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        sql.SQL(
                            "INSERT INTO {} (version, name, checksum) VALUES (%s, %s, %s)"
                        ).format(ledger.ident()),
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(migration.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
    return applied_now


async def check_schema(conn: psycopg.AsyncConnection, directory: Path, ledger: Ledger) -> int:
    """Fails fast unless every shipped migration is applied (and unedited); returns the version."""
    migrations = load_migrations(directory)
    exists = await conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{ledger.schema}.{ledger.table}",)
    )
    row = await exists.fetchone()
    if not row or not row[0]:
        raise MigrationError(f"schema {ledger.schema} is not migrated: run `migrate` first")
    applied = await _applied(conn, ledger)
    _check_checksums(applied, migrations)
    missing = [m.version for m in migrations if m.version not in applied]
    if missing:
        raise MigrationError(f"schema {ledger.schema} lacks migrations {missing}: run `migrate`")
    return max(applied, default=0)
