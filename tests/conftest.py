"""Test session: a real Postgres, a clean database per test.

``TEST_DATABASE_URL`` (a server where we may CREATE DATABASE) is used when set; otherwise the
session starts an embedded Postgres in a temporary directory and removes it at the end. The
schema comes from the alembic migrations, built once into a template database and copied for
each test (CREATE DATABASE ... TEMPLATE), which keeps a clean database per test cheap.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.ledger.db import asyncpg_connect_kwargs, make_engine, normalize_url, upgrade_head
from engine.ledger.embedded import embedded_postgres


@pytest.fixture(autouse=True)
def _private_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's TRADECTL_DATA_DIR is its own: the built-in simulator keeps its exchange
    there (engine/demo.py), and one test's exchange must never be another's starting point.
    A test that sets TRADECTL_DATA_DIR itself overrides this."""
    monkeypatch.setenv("TRADECTL_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[URL]:
    """URL of the server's maintenance database (``postgres``)."""
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        yield normalize_url(explicit)
        return
    base = Path(tempfile.mkdtemp(prefix="tradectl-pg-", dir="/tmp"))
    with embedded_postgres(base / "data", delete=True) as url:
        yield normalize_url(url)


async def _admin(server: URL, sql: str) -> None:
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(server))  # type: ignore[arg-type]
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def template_database(pg_server_url: URL) -> AsyncIterator[str]:
    name = f"tradectl_tpl_{uuid.uuid4().hex[:8]}"
    await _admin(pg_server_url, f'CREATE DATABASE "{name}"')
    await upgrade_head(pg_server_url.set(database=name))
    yield name
    await _admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_database_url(pg_server_url: URL) -> AsyncIterator[URL]:
    """A brand-new database with no schema at all (for migration tests)."""
    name = f"tradectl_empty_{uuid.uuid4().hex[:10]}"
    await _admin(pg_server_url, f'CREATE DATABASE "{name}"')
    yield pg_server_url.set(database=name)
    await _admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def database_url(pg_server_url: URL, template_database: str) -> AsyncIterator[URL]:
    """A clean database at the migrations' head, private to this test."""
    name = f"tradectl_t_{uuid.uuid4().hex[:10]}"
    await _admin(pg_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    yield pg_server_url.set(database=name)
    await _admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db_engine(database_url: URL) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()
