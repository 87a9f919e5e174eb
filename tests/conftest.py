"""Session-wide fixtures: the PostgreSQL server and migrated databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest

from coremachine.services.state.schema import migrate_all
from tests.databases import create_database, drop_database, server_url


@pytest.fixture(scope="session")
def admin_url() -> str:
    return server_url()


@pytest.fixture(scope="session")
def template_db(admin_url: str) -> Iterator[str]:
    """A fully migrated database that tests clone (CREATE DATABASE ... TEMPLATE)."""
    url = create_database(admin_url, prefix="cm_template")
    asyncio.run(migrate_all(url, url))
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    yield str(name)
    drop_database(admin_url, url)


@pytest.fixture
def db_url(admin_url: str, template_db: str) -> Iterator[str]:
    """A fresh migrated database for one test."""
    url = create_database(admin_url, template=template_db)
    yield url
    drop_database(admin_url, url)


@pytest.fixture
async def pg_conn(db_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        yield conn
