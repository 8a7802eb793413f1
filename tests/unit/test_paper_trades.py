"""The paper venue's market stream carries public trades (each walk step's market trade, and our
own fills), so the liquidity check's rolling volume is known on paper too."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from engine.domain.market import Quote, Trade
from engine.domain.types import ClientOrderId, OrderType, Side, TimeInForce
from engine.marketdata.conflator import Conflator
from engine.venues.base import OrderRequest
from engine.venues.paper import BTCUSDT, PRES_YES, default_paper_venue
from tests.unit.test_paper_venue import SteppingClock

MINUTE = timedelta(minutes=1)


async def test_each_walk_step_trades_at_the_touch_and_the_volume_becomes_known() -> None:
    clock = SteppingClock()
    venue = default_paper_venue((PRES_YES,), seed=3, clock=clock)
    stream = venue.market_stream([PRES_YES])
    conflator = Conflator()
    assert conflator.volumes.volume(PRES_YES, MINUTE, clock()) is None
    [quote] = venue.step()
    events = stream.drain()
    assert events[0] == quote
    [trade] = [e for e in events if isinstance(e, Trade)]
    assert trade.price in (quote.bid, quote.ask)
    assert 0 < trade.quantity <= quote.ask_size
    for event in events:
        conflator.publish(event)
    assert conflator.volumes.volume(PRES_YES, MINUTE, clock()) == trade.quantity
    await venue.close()


async def test_our_fill_is_a_public_trade_taken_by_us() -> None:
    clock = SteppingClock()
    venue = default_paper_venue((BTCUSDT,), seed=3, clock=clock)
    [quote] = venue.step()
    stream = venue.market_stream([BTCUSDT])
    await venue.submit(
        OrderRequest(
            client_order_id=ClientOrderId("take"),
            symbol=BTCUSDT,
            side=Side.BUY,
            type=OrderType.MARKET,
            quantity=Decimal("0.01"),
            time_in_force=TimeInForce.IOC,
        )
    )
    [trade] = [e for e in stream.drain() if isinstance(e, Trade)]
    assert (trade.price, trade.quantity, trade.aggressor) == (quote.ask, Decimal("0.01"), Side.BUY)
    await venue.close()


async def test_a_slow_reader_gets_the_latest_quote_and_every_trade() -> None:
    clock = SteppingClock()
    venue = default_paper_venue((PRES_YES,), seed=4, clock=clock)
    stream = venue.market_stream([PRES_YES])
    steps = [venue.step()[0] for _ in range(5)]
    await venue.close()
    events = [e async for e in stream]
    assert [e for e in events if isinstance(e, Quote)] == [steps[-1]]
    assert len([e for e in events if isinstance(e, Trade)]) == 5
