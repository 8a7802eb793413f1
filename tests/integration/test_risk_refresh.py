"""The risk gate's exposure refresh runs off the path from a decision to the wire."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import AccountId
from engine.exceptions import DatabaseUnavailable
from engine.ledger.db import asyncpg_connect_kwargs
from engine.limits_book import LimitsBook
from engine.marketdata.conflator import Conflator
from engine.portfolio import Portfolio
from engine.risk_gate import RiskGate
from engine.tasks import stop_tasks
from tests.helpers import eventually

ACCOUNT = AccountId("acct-refresh")

# Waiting on the fills table's lock: the refresh's read of the new fills, in this test's database.
# pg_locks only: the blocker asks from inside its transaction, where pg_stat_activity is a
# snapshot taken at its first use (a backend connected since would be missing).
_THIS_DATABASE = "(SELECT oid FROM pg_database WHERE datname = current_database())"
_READ_WAITING = f"""
    SELECT pid FROM pg_locks
    WHERE relation = 'fills'::regclass AND NOT granted AND database = {_THIS_DATABASE}
"""
_WAITING_ON_LOCKS = (
    f"SELECT count(*) FROM pg_locks WHERE NOT granted AND database = {_THIS_DATABASE}"
)


@dataclass
class Stalled:
    """A gate whose due refresh waits for the fills table, locked by ``blocker``'s ``tx``."""

    gate: RiskGate
    portfolio: Portfolio
    blocker: asyncpg.Connection
    tx: asyncpg.transaction.Transaction
    reader: int  # the refresh's backend


@contextlib.asynccontextmanager
async def _stalled_refresh(db_engine: AsyncEngine, database_url: URL) -> AsyncIterator[Stalled]:
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
        reader = await eventually(
            lambda: blocker.fetchval(_READ_WAITING), message="the refresh never started"
        )
        yield Stalled(gate, portfolio, blocker, tx, reader)
    finally:
        await blocker.close()


async def _failed(stalled: Stalled) -> None:
    """The stalled read's connection dropped: the background refresh failed."""
    await stalled.blocker.execute("SELECT pg_terminate_backend($1)", stalled.reader)
    task = stalled.gate._refreshing
    await eventually(lambda: task is not None and task.done(), message="the read never ended")


async def test_a_due_refresh_does_not_hold_up_the_batch_and_a_lasting_failure_reaches_the_next(
    db_engine: AsyncEngine, database_url: URL
) -> None:
    async with _stalled_refresh(db_engine, database_url) as stalled:
        gate, blocker = stalled.gate, stalled.blocker
        await asyncio.wait_for(gate.prepare(), timeout=10)  # one refresh at a time, still waiting
        assert await blocker.fetchval(_WAITING_ON_LOCKS) == 1

        await _failed(stalled)
        # the next batch reads again, inline: it waits for the lock like the failed read did,
        # and when that read fails too (the ledger is still away) the batch hears it
        retry = asyncio.create_task(gate.prepare())
        again = await eventually(
            lambda: _other_reader(blocker, stalled.reader), message="the next batch never read"
        )
        assert not retry.done()
        await blocker.execute("SELECT pg_terminate_backend($1)", again)
        with pytest.raises(DatabaseUnavailable):
            await asyncio.wait_for(retry, timeout=10)
        await stalled.tx.rollback()
    await gate.prepare()  # raised once: the batches go on


async def _other_reader(blocker: asyncpg.Connection, pid: int) -> int | None:
    found: int | None = await blocker.fetchval(_READ_WAITING)
    return found if found != pid else None


async def test_a_background_refresh_that_failed_once_does_not_stop_the_next_batch(
    db_engine: AsyncEngine, database_url: URL
) -> None:
    counted = {"account": ACCOUNT, "component": "risk_refresh"}
    before = REGISTRY.get_sample_value("tradectl_errors_total", counted) or 0.0
    async with _stalled_refresh(db_engine, database_url) as stalled:
        await _failed(stalled)
        await stalled.tx.rollback()  # the ledger answers again
    # told of, though no batch will raise it
    assert REGISTRY.get_sample_value("tradectl_errors_total", counted) == before + 1
    generation = stalled.portfolio.generation
    await asyncio.wait_for(stalled.gate.prepare(), timeout=10)  # read inline, nothing raised
    assert stalled.gate._seen_generation == generation
    assert stalled.gate.background() == {}


async def test_a_stop_cancels_the_background_refresh(
    db_engine: AsyncEngine, database_url: URL
) -> None:
    async with _stalled_refresh(db_engine, database_url) as stalled:
        gate = stalled.gate
        [task] = gate.background().values()
        assert await stop_tasks(gate.background(), deadline_s=10) == []
        assert task.cancelled()
        assert gate.background() == {}
        await stalled.tx.rollback()
