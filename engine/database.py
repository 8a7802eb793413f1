"""Which Postgres the engine uses: ``DATABASE_URL``, or an embedded one in the data directory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.config import Settings
from engine.exceptions import ConfigError
from engine.ledger.db import ensure_at_head, make_engine, normalize_url, upgrade_head
from engine.ledger.embedded import embedded_postgres
from engine.ledger.roles import RoleNames, apply_grants, provision_roles
from engine.psql import psql_command


@dataclass(frozen=True, slots=True)
class Database:
    url: URL
    engine: AsyncEngine
    embedded: bool
    #: what people and scripts inspect the ledger with (``tradectl sql``): :func:`inspect_url`
    inspect_url: URL

    @property
    def psql(self) -> str:
        """A ready-to-paste psql command, pipe-safe and env-free (engine/psql.py)."""
        return psql_command(self.inspect_url)


async def _migrate(url: URL, roles: RoleNames) -> None:
    """Upgrade the schema to head, then grant the engine and read-only roles their privileges."""
    try:
        await upgrade_head(url)
    except sa_exc.DBAPIError as exc:
        refused = [
            e
            for e in (exc.orig, getattr(exc.orig, "__cause__", None))
            if isinstance(e, asyncpg.InsufficientPrivilegeError)
        ]
        if not refused:
            raise
        # e.g. `tradectl migrate` with only DATABASE_URL, the engine role's, set
        raise ConfigError(
            f"the migration as {url.username} was refused ({refused[0]}); migrations run as "
            f"the owner role ({roles.owner}): set TRADECTL_MIGRATE_DATABASE_URL to its URL "
            "(README: Database roles)"
        ) from None
    await apply_grants(url, roles)


async def _readonly_exists(engine: AsyncEngine, role: str) -> bool:
    """The read-only role exists *and* was granted this database's ledger: roles are
    server-wide, and a database migrated without the grants would refuse it every read."""
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = :role)"), {"role": role}
        )
        if not found.scalar_one():
            return False
        granted = await conn.execute(
            text("SELECT has_table_privilege(:role, 'orders', 'SELECT')"), {"role": role}
        )
        return bool(granted.scalar_one())


async def inspect_url(engine: AsyncEngine, url: URL, *, embedded: bool, roles: RoleNames) -> URL:
    """The one place that chooses how ``psql`` (``tradectl sql``, dashboards) connects: as the
    read-only role, which cannot change a row, once it exists with its grants; else as the
    engine."""
    if embedded or await _readonly_exists(engine, roles.readonly):
        return url.set(username=roles.readonly)._replace(password=None)
    return url


@contextlib.asynccontextmanager
async def open_database(
    settings: Settings, *, migrate: bool = False, keep_running: bool = False, owner: bool = False
) -> AsyncIterator[Database]:
    """Yield the ledger database, at the migrations' head, connected as the engine.

    With ``DATABASE_URL`` set the schema must already be at head (``tradectl migrate``) unless
    ``migrate`` is true; migrating connects as ``TRADECTL_MIGRATE_DATABASE_URL`` (the owner;
    default ``DATABASE_URL``), and with only that one set the database is opened as the owner.
    Without either an embedded Postgres is started in ``TRADECTL_DATA_DIR/pg`` (or attached
    to, if another tradectl process already runs it), its superuser creates the roles, the
    owner migrates, the engine role connects, and the server is stopped on exit when no other
    tradectl process still uses it (``keep_running``: left running, for a printed psql command
    to use after this process has gone; the next engine to stop stops it). ``owner``: connected
    as the owner instead (``TRADECTL_MIGRATE_DATABASE_URL``, else ``DATABASE_URL``), for what
    only the owner writes (``tradectl accounts``).
    """
    roles = settings.roles
    async with contextlib.AsyncExitStack() as stack:
        engine_secret = settings.database_url
        if engine_secret is None and migrate:
            engine_secret = settings.migrate_database_url
        if owner and settings.migrate_database_url is not None:
            engine_secret = settings.migrate_database_url
        if engine_secret is not None:
            url = normalize_url(engine_secret.get_secret_value())
            embedded = False
            if migrate:
                owner_secret = settings.migrate_database_url or engine_secret
                await _migrate(normalize_url(owner_secret.get_secret_value()), roles)
        elif settings.migrate_database_url is not None:
            raise ConfigError(
                "TRADECTL_MIGRATE_DATABASE_URL is set but DATABASE_URL is not: DATABASE_URL "
                "is the engine's connection (the engine role's, see README: Database roles)"
            )
        else:
            data = settings.data_dir / "pg"
            raw = await asyncio.to_thread(
                stack.enter_context, embedded_postgres(data, keep_running=keep_running)
            )
            admin = normalize_url(raw)
            await provision_roles(admin, roles)
            await _migrate(admin.set(username=roles.owner), roles)
            url = admin.set(username=roles.owner if owner else roles.engine)
            embedded = True
        engine = make_engine(url)
        # closes the ledger's asyncpg pool too (engine/ledger/connections.py)
        stack.push_async_callback(engine.dispose)
        await ensure_at_head(engine)
        yield Database(
            url=url,
            engine=engine,
            embedded=embedded,
            inspect_url=await inspect_url(engine, url, embedded=embedded, roles=roles),
        )
