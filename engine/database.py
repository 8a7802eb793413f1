"""Which Postgres the engine uses: ``DATABASE_URL``, or an embedded one in the data directory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.config import Settings
from engine.ledger.db import ensure_at_head, make_engine, normalize_url, upgrade_head
from engine.ledger.embedded import embedded_postgres
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


def inspect_url(url: URL, *, embedded: bool) -> URL:
    """The one place that chooses how ``psql`` (``tradectl sql``) connects to the ledger.

    For now the engine's own connection; with database roles this is the read-only role."""
    del embedded
    return url


@contextlib.asynccontextmanager
async def open_database(
    settings: Settings, *, migrate: bool = False, keep_running: bool = False
) -> AsyncIterator[Database]:
    """Yield the ledger database, at the migrations' head.

    With ``DATABASE_URL`` set the schema must already be at head (``tradectl migrate``) unless
    ``migrate`` is true. Without it an embedded Postgres is started in ``TRADECTL_DATA_DIR/pg``
    (or attached to, if another tradectl process already runs it), migrated, and stopped on exit
    when no other tradectl process still uses it (``keep_running``: left running, for a printed
    psql command to use after this process has gone; the next engine to stop stops it).
    """
    async with contextlib.AsyncExitStack() as stack:
        if settings.database_url is not None:
            url = normalize_url(settings.database_url.get_secret_value())
            embedded = False
        else:
            data = settings.data_dir / "pg"
            raw = await asyncio.to_thread(
                stack.enter_context, embedded_postgres(data, keep_running=keep_running)
            )
            url = normalize_url(raw)
            embedded = True
            migrate = True
        if migrate:
            await upgrade_head(url)
        engine = make_engine(url)
        stack.push_async_callback(engine.dispose)
        await ensure_at_head(engine)
        yield Database(
            url=url,
            engine=engine,
            embedded=embedded,
            inspect_url=inspect_url(url, embedded=embedded),
        )
