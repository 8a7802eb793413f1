"""What every concept of the ledger shares: the account and venue it writes, the clock, and
pooled connections whose failures leave as the ledger's own errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import AccountId, VenueName
from engine.exceptions import LedgerError
from engine.ledger.connections import ledger_connections
from engine.ledger.db import translate_error
from engine.ledger.fence import Fence


class LedgerPart:
    """One concept's writes and reads for one account on one venue; built by
    :class:`engine.ledger.ledger.Ledger`, which shares the engine and clock among its parts."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        account: AccountId,
        venue: VenueName,
        clock: Callable[[], datetime],
        fence: Fence | None = None,
    ) -> None:
        self._engine = engine
        self._connections = ledger_connections(engine)
        self.account = account
        self.venue = venue
        self._clock = clock
        #: the lease epoch this part's execution writes are fenced on (engine/ledger/fence.py)
        self._fence = fence or Fence(account)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the engine's ledger pool (engine/ledger/connections.py), outside any
        transaction (each statement is then its own transaction: the right thing for reads and
        one-statement writes)."""
        with self._translated():
            async with self._connections.connection() as db:
                yield db

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        """One transaction; connection-level failures leave as DatabaseUnavailable."""
        async with self._connection() as db, db.transaction():
            yield db

    @asynccontextmanager
    async def _fenced_tx(self, what: str) -> AsyncIterator[asyncpg.Connection]:
        """One transaction that first checks (and locks) the lease epoch: LeaseLost, writing
        nothing, when another process took the account over."""
        async with self._tx() as db:
            await self._fence.check(db, what)
            yield db

    def _fenced(self, params: dict[str, object]) -> dict[str, object]:
        """A fenced statement's parameters: ``params`` plus the holder and epoch."""
        return {**params, **self._fence.params}

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except LedgerError:
            raise
        except Exception as exc:
            mapped = translate_error(exc, self._engine.url)
            if mapped is exc:
                raise
            raise mapped from exc
