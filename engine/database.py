"""Which Postgres the engine uses: ``DATABASE_URL``, or an embedded one in the data directory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.config import Settings
from engine.ledger.db import ensure_at_head, libpq_url, make_engine, normalize_url, upgrade_head
from engine.ledger.embedded import embedded_postgres


@dataclass(frozen=True, slots=True)
class Database:
    url: URL
    engine: AsyncEngine
    embedded: bool
    #: a ready-to-paste psql command (the embedded package ships its own psql binary)
    psql: str


def _psql_command(url: URL, embedded: bool) -> str:
    if embedded:
        import embedded_postgres

        binary = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
        return f"{binary} '{libpq_url(url)}'"
    # never print a password: psql will prompt for it (or read PGPASSWORD)
    return f"psql '{url.set(drivername='postgresql', password=None).render_as_string()}'"


@contextlib.asynccontextmanager
async def open_database(settings: Settings, *, migrate: bool = False) -> AsyncIterator[Database]:
    """Yield the ledger database, at the migrations' head.

    With ``DATABASE_URL`` set the schema must already be at head (``tradectl migrate``) unless
    ``migrate`` is true. Without it an embedded Postgres is started in ``TRADECTL_DATA_DIR/pg``
    (or attached to, if another tradectl process already runs it), migrated, and stopped on exit
    when no other tradectl process still uses it.
    """
    async with contextlib.AsyncExitStack() as stack:
        if settings.database_url is not None:
            url = normalize_url(settings.database_url.get_secret_value())
            embedded = False
        else:
            data = settings.data_dir / "pg"
            raw = await asyncio.to_thread(stack.enter_context, embedded_postgres(data))
            url = normalize_url(raw)
            embedded = True
            migrate = True
        if migrate:
            await upgrade_head(url)
        engine = make_engine(url)
        stack.push_async_callback(engine.dispose)
        await ensure_at_head(engine)
        yield Database(url=url, engine=engine, embedded=embedded, psql=_psql_command(url, embedded))
