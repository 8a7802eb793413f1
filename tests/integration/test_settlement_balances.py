"""What the balance check expects once a market settled: its contracts gone (all of them, those
held before tradectl traded too) and the payout in cash, counted once: a baseline taken after
the settlement was recorded already contains it. ``ledger.balances.expected`` and the
``current_balances`` view agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import AccountId, Asset, Symbol, VenueName
from engine.ledger.ledger import Ledger
from engine.venues.base import BalanceReport, InstrumentRules

MARKET = Symbol("KXRAIN-26DEC31")
CONTRACTS, USD = Asset(MARKET), Asset("USD")
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
VENUE = VenueName("kalshi")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 1) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


async def ledger_with_a_market(db_engine: AsyncEngine, clock: Clock) -> Ledger:
    ledger = Ledger(db_engine, account=AccountId("rain"), venue=VENUE, clock=clock)
    await ledger.balances.upsert_instrument(
        InstrumentRules(
            symbol=MARKET,
            base_asset=CONTRACTS,
            quote_asset=USD,
            tick_size=Decimal("0.01"),
            step_size=Decimal("0.01"),
            min_qty=Decimal("0.01"),
            max_qty=Decimal(1000),
        )
    )
    # 40 contracts held before tradectl traded this market, and 100 dollars
    await ledger.balances.save_baselines({CONTRACTS: Decimal(40), USD: Decimal(100)}, fill_id=0)
    return ledger


async def view(db_engine: AsyncEngine) -> dict[str, tuple[Decimal, Decimal]]:
    async with db_engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT asset, expected, difference FROM current_balances WHERE account = 'rain'")
        )
        return {r.asset: (r.expected, r.difference) for r in rows}


async def test_a_settled_market_pays_out_every_contract_held_once(db_engine: AsyncEngine) -> None:
    clock = Clock()
    ledger = await ledger_with_a_market(db_engine, clock)
    clock.advance()
    assert await ledger.settlements.record(
        MARKET, result="yes", payout=Decimal(1), settled_at=clock()
    )
    assert await ledger.balances.expected(upto_fill_id=0) == {
        CONTRACTS: Decimal(0),
        USD: Decimal(140),
    }
    # the venue agrees: the view shows no difference either
    clock.advance()
    await ledger.balances.record(
        [
            BalanceReport(
                venue=VENUE, asset=a, free=v, locked=Decimal(0), venue_ts=None, received_at=clock()
            )
            for a, v in ((CONTRACTS, Decimal(0)), (USD, Decimal(140)))
        ]
    )
    assert await view(db_engine) == {
        CONTRACTS: (Decimal(0), Decimal(0)),
        USD: (Decimal(140), Decimal(0)),
    }

    # an agreeing check takes new baselines after the settlement: it is not paid twice
    await ledger.balances.save_baselines(
        {CONTRACTS: Decimal(0), USD: Decimal(140)}, fill_id=0, taken_at=clock()
    )
    assert await ledger.balances.expected(upto_fill_id=0) == {
        CONTRACTS: Decimal(0),
        USD: Decimal(140),
    }
    assert await view(db_engine) == {
        CONTRACTS: (Decimal(0), Decimal(0)),
        USD: (Decimal(140), Decimal(0)),
    }


async def test_a_settlement_past_the_checked_watermark_is_not_counted_yet(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    ledger = await ledger_with_a_market(db_engine, clock)
    watermark = await ledger.settlements.watermark()
    clock.advance()
    await ledger.settlements.record(MARKET, result="no", payout=Decimal(0), settled_at=clock())
    assert await ledger.settlements.watermark() > watermark
    assert await ledger.balances.expected(upto_fill_id=0, upto_settlement_id=watermark) == {
        CONTRACTS: Decimal(40),
        USD: Decimal(100),
    }
    # resolved NO: the contracts are gone and nothing is paid
    assert await ledger.balances.expected(upto_fill_id=0) == {
        CONTRACTS: Decimal(0),
        USD: Decimal(100),
    }
