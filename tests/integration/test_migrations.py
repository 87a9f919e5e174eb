"""Migrations: applied on an empty database, once, under a lock, never edited."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import psycopg
import pytest

from coremachine.services.state.schema import LEDGER, MIGRATIONS_DIR, migrate_state
from coremachine.shared.migrations import MigrationError, check_schema, load_migrations, migrate
from tests.databases import create_database, drop_database


@pytest.fixture
def empty_db(admin_url):
    url = create_database(admin_url, prefix="cm_empty")
    yield url
    drop_database(admin_url, url)


async def test_migrations_apply_on_an_empty_database(empty_db):
    applied = await migrate_state(empty_db)
    assert applied == [m.version for m in load_migrations(MIGRATIONS_DIR)]
    async with await psycopg.AsyncConnection.connect(empty_db) as conn:
        assert await check_schema(conn, MIGRATIONS_DIR, LEDGER) == applied[-1]
        cur = await conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'coremachine'"
        )
        tables = {row[0] for row in await cur.fetchall()}
    assert {"jobs", "tasks", "job_stages", "outbox", "job_events", "schema_migrations"} <= tables
    # Running again applies nothing.
    assert await migrate_state(empty_db) == []


async def test_concurrent_migrations_apply_each_version_once(empty_db):
    results = await asyncio.gather(*(migrate_state(empty_db) for _ in range(5)))
    flat = sorted(v for r in results for v in r)
    assert flat == [m.version for m in load_migrations(MIGRATIONS_DIR)]


async def test_an_edited_migration_is_refused(empty_db, tmp_path: Path):
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    await migrate(empty_db, copy, LEDGER)
    first = sorted(copy.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="edited"):
        await migrate(empty_db, copy, LEDGER)


async def test_services_refuse_an_unmigrated_database(empty_db):
    async with await psycopg.AsyncConnection.connect(empty_db) as conn:
        with pytest.raises(MigrationError, match="not migrated"):
            await check_schema(conn, MIGRATIONS_DIR, LEDGER)
