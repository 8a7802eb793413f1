"""The migrations build exactly the schema that engine/ledger/schema.py describes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import URL, Connection

from engine.exceptions import SchemaNotAtHead
from engine.ledger import schema
from engine.ledger.db import (
    ROOT,
    asyncpg_connect_kwargs,
    downgrade,
    ensure_at_head,
    libpq_url,
    make_engine,
    schema_revision_status,
    upgrade_head,
)

CATALOG_QUERIES: dict[str, str] = {
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, is_nullable, column_default,
               numeric_precision, numeric_scale
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> 'alembic_version'
        ORDER BY table_name, ordinal_position
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'alembic_version'
        ORDER BY tablename, indexname
    """,
    "constraints": """
        SELECT c.conrelid::regclass::text AS table_name, c.conname, c.contype,
               pg_get_constraintdef(c.oid) AS definition
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = 'public' AND c.conrelid::regclass::text <> 'alembic_version'
        ORDER BY 1, 2
    """,
    "views": """
        SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY viewname
    """,
    "triggers": """
        SELECT t.tgrelid::regclass::text AS table_name, t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t WHERE NOT t.tgisinternal ORDER BY 1, 2
    """,
    "functions": """
        SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public' ORDER BY 1
    """,
    "sequences": """
        SELECT sequence_name, data_type FROM information_schema.sequences
        WHERE sequence_schema = 'public' ORDER BY 1
    """,
}


async def _connect(url: URL) -> asyncpg.Connection:
    return await asyncpg.connect(**asyncpg_connect_kwargs(url))  # type: ignore[arg-type]


async def _catalog(url: URL) -> dict[str, list[tuple[Any, ...]]]:
    conn = await _connect(url)
    try:
        return {
            name: [tuple(row.values()) for row in await conn.fetch(sql)]
            for name, sql in CATALOG_QUERIES.items()
        }
    finally:
        await conn.close()


@pytest.fixture
async def reference_database_url(pg_server_url: URL) -> AsyncIterator[URL]:
    """A database built straight from schema.py (no alembic)."""
    name = f"tradectl_ref_{uuid.uuid4().hex[:10]}"
    admin = await _connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = pg_server_url.set(database=name)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(schema.create_all)
    finally:
        await engine.dispose()
    yield url
    admin = await _connect(pg_server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _metadata_diffs(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, schema.metadata))


async def _autogenerate_diffs(url: URL) -> list[Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_metadata_diffs)
    finally:
        await engine.dispose()


def _assert_same_catalog(
    migrated: dict[str, list[tuple[Any, ...]]], reference: dict[str, list[tuple[Any, ...]]]
) -> None:
    for part in CATALOG_QUERIES:
        assert migrated[part] == reference[part], f"{part} differ between migrations and schema.py"


async def test_upgrade_head_matches_schema_py_then_downgrades_to_nothing_and_back(
    empty_database_url: URL, reference_database_url: URL
) -> None:
    await upgrade_head(empty_database_url)

    assert await _autogenerate_diffs(empty_database_url) == []
    reference = await _catalog(reference_database_url)
    assert {row[0] for row in reference["views"]} == {name for name, _ in schema.VIEWS}
    assert len(reference["triggers"]) == 4
    _assert_same_catalog(await _catalog(empty_database_url), reference)

    await downgrade(empty_database_url, "base")
    after_downgrade = await _catalog(empty_database_url)
    assert all(rows == [] for rows in after_downgrade.values()), after_downgrade

    await upgrade_head(empty_database_url)
    _assert_same_catalog(await _catalog(empty_database_url), reference)


async def test_revision_status_reports_current_and_head(empty_database_url: URL) -> None:
    engine = make_engine(empty_database_url)
    try:
        current, head = await schema_revision_status(engine)
        assert current is None
        assert head is not None
        await upgrade_head(empty_database_url)
        assert await schema_revision_status(engine) == (head, head)
        await ensure_at_head(engine)
    finally:
        await engine.dispose()


async def test_ensure_at_head_refuses_an_empty_database_and_names_tradectl_migrate(
    empty_database_url: URL,
) -> None:
    engine = make_engine(empty_database_url)
    try:
        with pytest.raises(SchemaNotAtHead, match="tradectl migrate"):
            await ensure_at_head(engine)
    finally:
        await engine.dispose()


def _alembic(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


async def test_the_alembic_cli_takes_the_url_from_x_or_database_url(
    empty_database_url: URL,
) -> None:
    url = libpq_url(empty_database_url)
    # -x wins over DATABASE_URL: point the latter somewhere unusable to prove it
    bogus = {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing"}
    await asyncio.to_thread(_alembic, "-x", f"url={url}", "upgrade", "head", env=bogus)
    current = await asyncio.to_thread(_alembic, "current", env={"DATABASE_URL": url})
    assert "0003 (head)" in current
