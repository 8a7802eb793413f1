"""The portfolio reads only the fills it has not read (engine.ledger.watermark), against Postgres:
late commits are not missed, and the kept exposure and P&L equal a full read of the history."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.domain.risk import Exposure
from engine.domain.types import StrategyId, Symbol
from engine.ledger.db import make_engine
from engine.portfolio import Portfolio

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "PRES-YES")
BASE = {"BTCUSDT": "BTC", "ETHUSDT": "ETH", "PRES-YES": "PRES-YES"}

_INSTRUMENTS = """
INSERT INTO instruments (venue, symbol, base_asset, quote_asset, tick_size, step_size,
                         min_notional, updated_at)
VALUES ('simulator', 'BTCUSDT', 'BTC', 'USDT', 0.01, 0.0001, 0, now()),
       ('simulator', 'ETHUSDT', 'ETH', 'USDT', 0.01, 0.0001, 0, now()),
       ('simulator', 'PRES-YES', 'PRES-YES', 'USD', 0.01, 1, 0, now())
ON CONFLICT DO NOTHING
"""
_ORDER = """
WITH d AS (
    INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, reason, md_ts,
                           decided_at, interval_key, sequence, verdicts, outcome)
    VALUES (:coid, :strategy, :account, :symbol, 'buy', 'r', now(), now(), :coid, 0, '[]',
            'reserved')
)
INSERT INTO orders (client_order_id, decision_id, strategy_id, account, venue, symbol, side,
                    type, time_in_force, requested_qty, state, created_at, expires_at, updated_at)
VALUES (:coid, :coid, :strategy, :account, 'simulator', :symbol, :side, 'LIMIT', 'GTC', :qty,
        :state, now(), now(), now())
"""
_FILL = """
INSERT INTO fills (venue, symbol, trade_id, client_order_id, account, side, qty, price, fee,
                   fee_asset, venue_ts, received_at, recorded_at)
VALUES ('simulator', :symbol, :coid, :order, :account, :side, :qty, :price, :fee, :fee_asset,
        :venue_ts, now(), now())
RETURNING id
"""
_SETTLE = """
INSERT INTO settlements (account, venue, symbol, result, payout, settled_at, recorded_at)
VALUES (:account, 'simulator', :symbol, 'yes', :payout, :settled_at, now())
"""
# Many terminal orders, a fill each: the history a read of the open orders must not scan.
_HISTORY = """
INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, reason, md_ts,
                       decided_at, interval_key, sequence, verdicts, outcome)
SELECT 'h' || n, 's1', 'acct', 'BTCUSDT', 'buy', 'r', now(), now(), 'h' || n, 0, '[]',
       'reserved'
FROM generate_series(1, 3000) AS n;
INSERT INTO orders (client_order_id, decision_id, strategy_id, account, venue, symbol, side,
                    type, time_in_force, requested_qty, state, created_at, expires_at, updated_at)
SELECT 'h' || n, 'h' || n, 's1', 'acct', 'simulator', 'BTCUSDT', 'BUY', 'LIMIT', 'GTC', 1,
       'FILLED', now(), now(), now()
FROM generate_series(1, 3000) AS n;
INSERT INTO fills (venue, symbol, trade_id, client_order_id, account, side, qty, price, fee,
                   fee_asset, venue_ts, received_at, recorded_at)
SELECT 'simulator', 'BTCUSDT', 'h' || n, 'h' || n, 'acct', 'BUY', 1, 100, 0, 'USDT', now(),
       now(), now()
FROM generate_series(1, 3000) AS n
"""
# What the portfolio read before it kept its own sums: the positions view over every fill.
_VIEW_POSITIONS = text(
    """
    SELECT strategy_id, symbol, sum(net_qty) FROM positions p
    WHERE account = :account
      AND NOT EXISTS (
          SELECT 1 FROM settlements s WHERE s.account = p.account AND s.symbol = p.symbol
      )
    GROUP BY strategy_id, symbol
    """
)


async def fill(
    conn: AsyncConnection,
    account: str,
    *,
    strategy: str | None = "s1",
    symbol: str = "BTCUSDT",
    side: str = "BUY",
    qty: str = "1",
    price: str = "100",
    fee: str = "0",
    fee_asset: str | None = "USDT",
    venue_ts: datetime = NOW,
    state: str = "FILLED",
) -> int:
    """One order (unless ``strategy`` is None: a fill of an order the ledger does not know)
    and one fill of it; the fill's id."""
    coid = f"c-{uuid.uuid4().hex[:12]}"
    if strategy is not None:
        await conn.execute(
            text(_ORDER),
            {
                "coid": coid,
                "strategy": strategy,
                "account": account,
                "symbol": symbol,
                "side": side,
                "qty": Decimal(qty),
                "state": state,
            },
        )
    result = await conn.execute(
        text(_FILL),
        {
            "symbol": symbol,
            "coid": coid,
            "order": coid if strategy else None,
            "account": account,
            "side": side,
            "qty": Decimal(qty),
            "price": Decimal(price),
            "fee": Decimal(fee),
            "fee_asset": fee_asset,
            "venue_ts": venue_ts,
        },
    )
    return int(result.scalar_one())


async def instruments(db_engine: AsyncEngine) -> None:
    async with db_engine.begin() as conn:
        await conn.execute(text(_INSTRUMENTS))


async def refreshed(portfolio: Portfolio) -> Portfolio:
    portfolio.mark_dirty()
    await portfolio.refresh()
    await portfolio.refresh_pnl(NOW)
    return portfolio


def held(portfolio: Portfolio) -> dict[tuple[StrategyId, Symbol], Decimal]:
    return {key: e.position for key, e in portfolio.snapshot().items()}


async def test_a_fill_committed_late_with_a_lower_id_is_counted_at_the_next_refresh(
    db_engine: AsyncEngine,
) -> None:
    await instruments(db_engine)
    portfolio = await refreshed(Portfolio(db_engine, "acct"))
    # two writers of their own: the engine's Core pool (engine/ledger/connections.py) is the
    # portfolio's
    writers = make_engine(db_engine.url)
    try:
        async with writers.connect() as late, writers.connect() as early:
            await late.begin()
            late_id = await fill(late, "acct", qty="2")  # its transaction stays open
            async with early.begin():
                early_id = await fill(early, "acct", qty="5")
            assert late_id < early_id
            await refreshed(portfolio)
            await refreshed(portfolio)  # the watermark may not pass the open transaction
            assert held(portfolio) == {(StrategyId("s1"), Symbol("BTCUSDT")): Decimal(5)}
            await late.commit()
    finally:
        await writers.dispose()
    await refreshed(portfolio)
    assert held(portfolio) == {(StrategyId("s1"), Symbol("BTCUSDT")): Decimal(7)}
    assert portfolio.pnl(lambda s: Decimal(100), NOW) == (Decimal(0), Decimal(0))


async def test_a_refresh_reads_only_the_fills_recorded_since_the_last_one(
    db_engine: AsyncEngine,
) -> None:
    await instruments(db_engine)
    async with db_engine.begin() as conn:
        for i in range(30):
            await fill(conn, "acct", side="BUY" if i % 3 else "SELL", price=str(100 + i))
    portfolio = await refreshed(Portfolio(db_engine, "acct"))
    assert portfolio.fills_read == 30 + 30  # exposure's and the P&L's first full reads
    for _ in range(3):  # past the watermark's pinning: the ids read below it are dropped
        await refreshed(portfolio)
    before = portfolio.fills_read
    async with db_engine.begin() as conn:
        for i in range(4):
            await fill(conn, "acct", symbol="ETHUSDT", venue_ts=NOW + timedelta(seconds=i))
    await refreshed(portfolio)
    assert portfolio.fills_read - before == 4
    assert held(portfolio)[(StrategyId("s1"), Symbol("ETHUSDT"))] == Decimal(4)
    assert portfolio._fills.seen <= set(range(31, 35))


async def test_open_orders_stay_a_read_of_the_non_terminal_orders_only(
    db_engine: AsyncEngine,
) -> None:
    await instruments(db_engine)
    async with db_engine.begin() as conn:
        for statement in _HISTORY.split(";"):
            await conn.execute(text(statement))
        await fill(conn, "acct", state="PARTIALLY_FILLED")  # requested 1, filled 1: none left
        await conn.execute(text("ANALYZE"))
        plan = "\n".join(
            row[0]
            for row in await conn.execute(
                text(
                    "EXPLAIN SELECT * FROM order_status WHERE account = 'acct' AND state IN "
                    "('PENDING_SUBMIT', 'UNKNOWN', 'OPEN', 'PARTIALLY_FILLED', 'PENDING_CANCEL')"
                )
            )
        )
    assert "ix_orders_non_terminal" in plan
    assert "Seq Scan on fills" not in plan
    portfolio = await refreshed(Portfolio(db_engine, "acct"))
    assert portfolio.snapshot()[(StrategyId("s1"), Symbol("BTCUSDT"))] == Exposure(
        position=Decimal(3001)
    )


_fills = st.fixed_dictionaries(
    {
        "strategy": st.sampled_from(["s1", "s2", None]),
        "symbol": st.sampled_from(SYMBOLS),
        "side": st.sampled_from(["BUY", "SELL"]),
        "qty": st.integers(1, 5).map(str),
        "price": st.integers(1, 99).map(lambda p: str(Decimal(p) / 100)),
        "fee_in_base": st.booleans(),
        # around the day's start, and out of order: some fills sort before folded ones
        "hours": st.integers(-14, 3),
    }
)
_steps = st.lists(st.one_of(_fills, st.just("refresh"), st.just("settle")), min_size=1, max_size=25)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_steps)
async def test_the_kept_exposure_and_pnl_equal_a_full_read_of_the_history(
    db_engine: AsyncEngine, steps: list[Any]
) -> None:
    await instruments(db_engine)
    account = f"acct-{uuid.uuid4().hex[:8]}"  # one per example, in the one database
    kept = await refreshed(Portfolio(db_engine, account))
    settled = False
    for step in steps:
        if step == "refresh":
            await refreshed(kept)
            continue
        async with db_engine.begin() as conn:
            if step == "settle":
                if not settled:
                    settled = True
                    await conn.execute(
                        text(_SETTLE),
                        {
                            "account": account,
                            "symbol": "PRES-YES",
                            "payout": Decimal(1),
                            "settled_at": NOW - timedelta(hours=1),
                        },
                    )
                continue
            fee_asset = BASE[step["symbol"]] if step["fee_in_base"] else "USDT"
            await fill(
                conn,
                account,
                strategy=step["strategy"],
                symbol=step["symbol"],
                side=step["side"],
                qty=step["qty"],
                price=step["price"],
                fee="0.01",
                fee_asset=fee_asset,
                venue_ts=NOW + timedelta(hours=step["hours"]),
            )
    await refreshed(kept)
    full = await refreshed(Portfolio(db_engine, account))
    assert kept.snapshot() == full.snapshot()
    async with db_engine.connect() as conn:
        view = {
            (StrategyId(s), Symbol(sym)): Decimal(q)
            for s, sym, q in await conn.execute(_VIEW_POSITIONS, {"account": account})
        }
    assert held(kept) == view
    assert kept._pnl == full._pnl
    mark = {
        Symbol("BTCUSDT"): Decimal("0.5"),
        Symbol("ETHUSDT"): Decimal("0.25"),
        Symbol("PRES-YES"): Decimal("0.75"),
    }.get
    assert kept.pnl(mark, NOW) == full.pnl(mark, NOW)
    assert kept.day_start_pnl(mark) == full.day_start_pnl(mark)
    # a new trading day folds everything again, equal to a full read for that day
    tomorrow = NOW + timedelta(days=1)
    await kept.refresh_pnl(tomorrow)
    fresh = Portfolio(db_engine, account)
    await fresh.refresh_pnl(tomorrow)
    assert kept._pnl == fresh._pnl
    await asyncio.sleep(0)


async def test_a_fill_sorting_before_the_folded_ones_folds_its_symbol_again(
    db_engine: AsyncEngine,
) -> None:
    await instruments(db_engine)
    kept = await refreshed(Portfolio(db_engine, "acct"))
    for side, price, hours in (("BUY", "10", 0), ("BUY", "90", 2), ("SELL", "50", 1)):
        async with db_engine.begin() as conn:
            await fill(conn, "acct", side=side, price=price, venue_ts=NOW + timedelta(hours=hours))
        await refreshed(kept)
    full = await refreshed(Portfolio(db_engine, "acct"))
    assert kept._pnl == full._pnl
    # in venue order the sell closed against the first buy alone: 50 - 10
    assert kept._pnl[Symbol("BTCUSDT")].position.realized_pnl == Decimal(40)  # type: ignore[union-attr]


async def test_after_forget_the_next_refresh_reads_the_whole_history_again(
    db_engine: AsyncEngine,
) -> None:
    await instruments(db_engine)
    async with db_engine.begin() as conn:
        for _ in range(5):
            await fill(conn, "acct", fee="0.5", fee_asset="BTC")
    portfolio = await refreshed(Portfolio(db_engine, "acct"))
    before = portfolio.fills_read
    portfolio.forget()
    assert portfolio.dirty
    await refreshed(portfolio)
    assert portfolio.fills_read - before == 5 + 5  # exposure's and the P&L's full reads
    assert held(portfolio) == {(StrategyId("s1"), Symbol("BTCUSDT")): Decimal("2.5")}
