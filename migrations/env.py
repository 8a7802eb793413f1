"""Alembic environment: async (asyncpg), target metadata = engine.ledger.schema.metadata.

The URL comes from, in order: ``-x url=...`` on the command line, the ``sqlalchemy.url`` main
option (set by :func:`engine.ledger.db.alembic_config`, i.e. ``tradectl migrate`` and the test
fixtures), or the ``DATABASE_URL`` environment variable. Migrations run on their own event loop:
:func:`engine.ledger.db.upgrade_head` calls alembic from a worker thread for that reason.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from engine.exceptions import ConfigError
from engine.ledger.db import normalize_url
from engine.ledger.schema import metadata

config = context.config

# Programmatic callers (the engine, the tests) own logging: reconfiguring it from the ini file
# would silence their loggers. The bare CLI gets the ini's console logging.
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
        or os.environ.get("DATABASE_URL")
    )
    if not url:
        raise ConfigError(
            "no database URL for the migrations: run `tradectl migrate`, or pass "
            "`alembic -x url=postgresql://user:pass@host:5432/db ...`, or set DATABASE_URL"
        )
    return normalize_url(url).render_as_string(hide_password=False)


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        # every migration runs in one transaction: Postgres DDL is transactional
        transaction_per_migration=False,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: print the SQL instead of running it."""
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        # A caller that already holds a (sync-facing) connection, e.g. inside run_sync().
        _run_sync(connection)
        return
    asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
