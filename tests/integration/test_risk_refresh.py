"""The risk gate's exposure refresh runs off the path from a decision to the wire."""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import AccountId
from engine.exceptions import DatabaseUnavailable
from engine.ledger.db import asyncpg_connect_kwargs
from engine.limits_book import LimitsBook
from engine.marketdata.conflator import Conflator
from engine.portfolio import Portfolio
from engine.risk_gate import RiskGate
from tests.helpers import eventually

ACCOUNT = AccountId("acct-refresh")

# Waiting on the fills table's lock: the refresh's read of the new fills.
_READ_WAITING = """
    SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.relation = 'fills'::regclass AND NOT l.granted
"""


async def test_a_due_refresh_does_not_hold_up_the_batch_and_its_failure_reaches_the_next(
    db_engine: AsyncEngine, database_url: URL
) -> None:
    portfolio = Portfolio(db_engine, ACCOUNT)
    gate = RiskGate(
        limits=LimitsBook.empty(),
        market=Conflator(),
        portfolio=portfolio,
        refresh_interval_s=1e-9,
    )
    await gate.prepare()  # the first snapshot: inline
    blocker = await asyncpg.connect(**asyncpg_connect_kwargs(database_url))  # type: ignore[arg-type]
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE fills IN ACCESS EXCLUSIVE MODE")
        portfolio.mark_dirty()  # a fill landed: the next batch's refresh is due
        # the read waits for the lock; the batch does not wait for the read
        await asyncio.wait_for(gate.prepare(), timeout=10)
        pid = await eventually(
            lambda: blocker.fetchval(_READ_WAITING), message="the refresh never started"
        )
        await asyncio.wait_for(gate.prepare(), timeout=10)  # one refresh at a time, still waiting
        assert await blocker.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted") == 1

        await blocker.execute("SELECT pg_terminate_backend($1)", pid)

        async def next_batch_raises() -> bool:
            try:
                await gate.prepare()
            except DatabaseUnavailable:
                return True
            return False

        await eventually(next_batch_raises, message="the failed refresh was never raised")
        await tx.rollback()
    finally:
        await blocker.close()
    await gate.prepare()  # raised once: the batches go on
