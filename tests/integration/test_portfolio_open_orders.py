"""Strategies' open orders, read for all of them at once (engine.shared_read), against Postgres."""

from __future__ import annotations

import asyncio
import dataclasses

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.intents import Buy
from engine.domain.types import AccountId, OrderState, StrategyId
from engine.portfolio import Portfolio
from engine.venues.paper import BTCUSDT, PaperVenue, default_paper_venue
from tests.integration.test_execution import ACCOUNT, Clock, buy, coid_of, make_rig, quote

OTHER = StrategyId("strat-b")


def paper(clock: Clock) -> PaperVenue:
    venue = default_paper_venue((BTCUSDT,), seed=3, clock=clock)
    venue.set_quote(quote(clock, "50000", "50001"))
    return venue


def resting_buy(clock: Clock, strategy: StrategyId, interval: str) -> Buy:
    intent = buy(clock, price="49000", interval=interval)  # below the ask: it rests
    return dataclasses.replace(intent, key=dataclasses.replace(intent.key, strategy_id=strategy))


async def test_each_strategy_sees_only_its_own_open_orders_from_one_shared_read(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    rig = await make_rig(db_engine, paper(clock), clock)
    mine = resting_buy(clock, StrategyId("strat-a"), "i1")
    theirs = resting_buy(clock, OTHER, "i1")
    filled = buy(clock, interval="i2")  # a market order: filled, no longer open
    await rig.execution.process([mine, theirs, filled])
    portfolio = Portfolio(db_engine, ACCOUNT)
    elsewhere = Portfolio(db_engine, AccountId("acct-2"))

    a, b, none = await asyncio.gather(
        portfolio.open_orders(StrategyId("strat-a")),
        portfolio.open_orders(OTHER),
        portfolio.open_orders(StrategyId("nobody")),
    )

    assert [o.client_order_id for o in a] == [coid_of(mine)]
    assert [o.client_order_id for o in b] == [coid_of(theirs)]
    assert a[0].state is OrderState.OPEN
    assert none == ()
    assert portfolio._open_orders.reads == 1
    assert await elsewhere.open_orders(StrategyId("strat-a")) == ()


async def test_a_cancelled_order_is_gone_from_the_next_decision(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    rig = await make_rig(db_engine, paper(clock), clock)
    mine = resting_buy(clock, StrategyId("strat-a"), "i1")
    await rig.execution.process([mine])
    portfolio = Portfolio(db_engine, ACCOUNT)
    assert len(await portfolio.open_orders(StrategyId("strat-a"))) == 1

    await rig.execution.cancel_all(cause="test", strategy_id="strat-a")

    assert await portfolio.open_orders(StrategyId("strat-a")) == ()
