"""The loss limits' P&L (engine/portfolio.py) includes settlements: a settled position is closed
at its payout (revenue minus cost realized), it needs no mark any more, and its contracts are
no exposure. Real parts: the Kalshi simulator over its sockets, the adapter, a real Postgres."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.intents import Buy, DecisionKey
from engine.domain.types import Side, Symbol, TimeInForce, utc_now
from engine.portfolio import Portfolio
from engine.settlement import Settler
from engine.venues.kalshi_simulator import KalshiSimConfig, run_kalshi_simulator
from tests.contract.test_kalshi_simulator_contract import MARKET
from tests.integration.test_kalshi_execution import ACCOUNT, STRATEGY, start_engine

QTY = Decimal(3)
PRICE = Decimal("0.47")


def no_mark(symbol: Symbol) -> Decimal | None:
    return None  # a settled market has no quote any more


async def fees_paid(db: AsyncEngine) -> Decimal:
    async with db.connect() as conn:
        return Decimal((await conn.execute(text("SELECT sum(fee) FROM fills"))).scalar_one())


async def bought_then_settled(db_engine: AsyncEngine, result: str) -> Portfolio:
    """3 contracts bought at the ask (0.47), then the market settles ``result``."""
    async with run_kalshi_simulator(KalshiSimConfig(seed=21)) as sim:
        engine = await start_engine(db_engine, sim)
        portfolio = Portfolio(db_engine, ACCOUNT)
        settler = Settler(
            ledger=engine.ledger,
            venue=engine.venue,
            execution=engine.execution,
            on_settled=portfolio.mark_dirty,
        )
        try:
            await engine.execution.process(
                [
                    Buy(
                        key=DecisionKey(
                            strategy_id=STRATEGY, symbol=MARKET, interval_key="s", side=Side.BUY
                        ),
                        reason="below fair value",
                        md_ts=utc_now(),
                        quantity=QTY,
                        limit_price=PRICE,
                        time_in_force=TimeInForce.GTC,
                    )
                ]
            )
            [order] = await engine.ledger.orders.non_terminal() or [None]
            assert order is None, "the buy filled at once at the ask"
            await portfolio.refresh()
            await portfolio.refresh_pnl(utc_now())
            assert portfolio.pnl(no_mark, utc_now()) is None, "held without a mark: unknown"
            assert portfolio.account_exposures()[MARKET].position == QTY

            sim.state.settle_market(MARKET, result)
            assert await settler.sync() == [MARKET]
        finally:
            await engine.venue.close()
    await portfolio.refresh_if_dirty()
    return portfolio


async def test_a_market_settled_yes_realizes_the_payout_minus_cost_in_todays_pnl(
    db_engine: AsyncEngine,
) -> None:
    portfolio = await bought_then_settled(db_engine, "yes")
    fees = await fees_paid(db_engine)
    await portfolio.refresh_pnl(utc_now())
    pnl = portfolio.pnl(no_mark, utc_now())
    assert pnl is not None, "a settled position needs no mark"
    expected = QTY * 1 - QTY * PRICE - fees
    assert pnl == (expected, expected)
    assert MARKET not in portfolio.account_exposures(), "paid out: no position any more"


async def test_a_market_settled_no_is_a_loss_of_the_whole_cost(db_engine: AsyncEngine) -> None:
    portfolio = await bought_then_settled(db_engine, "no")
    fees = await fees_paid(db_engine)
    await portfolio.refresh_pnl(utc_now())
    assert portfolio.pnl(no_mark, utc_now()) == (-QTY * PRICE - fees, -QTY * PRICE - fees)


async def test_a_settlement_before_the_trading_day_is_not_todays_pnl(
    db_engine: AsyncEngine,
) -> None:
    portfolio = await bought_then_settled(db_engine, "yes")
    fees = await fees_paid(db_engine)
    now = utc_now()
    await portfolio.refresh_pnl(now, day_start=now + timedelta(hours=1))
    assert portfolio.pnl(no_mark, now) == (0, QTY - QTY * PRICE - fees)
