"""Kalshi market data end to end over the simulator's sockets, through the engine's feed and
conflator: the order book (snapshot, then deltas numbered by ``seq``) makes the quotes, an
injected sequence gap is counted for the account and answered by a resubscription whose fresh
snapshot puts the book right, and public trades reach the rolling volume of the liquidity check."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from decimal import Decimal

from pydantic import SecretStr

from engine.domain.types import (
    ClientOrderId,
    OrderType,
    Side,
    TimeInForce,
    VenueName,
    utc_now,
)
from engine.marketdata.conflator import Conflator
from engine.marketdata.feed import MarketDataFeed
from engine.venues.base import OrderRequest
from engine.venues.kalshi import KalshiConfig, KalshiVenue
from engine.venues.kalshi_simulator import KalshiSimConfig, KalshiSimHandle, run_kalshi_simulator
from engine.venues.metrics import VenueMetrics
from engine.venues.simulator.faults import FaultPlan, FaultRule
from tests.contract.test_kalshi_simulator_contract import FAST_STREAMS, MARKET
from tests.helpers import eventually
from tests.metrics_http import metrics_server, scrape


def venue_for(sim: KalshiSimHandle, account: str) -> KalshiVenue:
    return KalshiVenue(
        KalshiConfig(
            key_id=sim.key_id,
            private_key=SecretStr(sim.private_key_pem),
            rest_url=sim.rest_url,
            ws_url=sim.ws_url,
            venue_name=VenueName("kalshi-sim"),
            stream=FAST_STREAMS,
        ),
        metrics=VenueMetrics(account=account, venue="kalshi-sim"),
    )


def book_sid(sim: KalshiSimHandle) -> int | None:
    sids = [s.sids["orderbook_delta"] for s in sim.state.subscribers if "orderbook_delta" in s.sids]
    return sids[0] if len(sids) == 1 else None


def touch_of(conflator: Conflator) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
    q = conflator.quote(MARKET)
    return None if q is None else (q.bid, q.bid_size, q.ask, q.ask_size)


async def test_a_sequence_gap_resubscribes_and_the_fresh_snapshot_puts_the_book_right() -> None:
    account = f"book-{uuid.uuid4().hex[:8]}"
    lose_one = FaultRule.from_mapping({"kind": "orderbook_gap", "max_count": 1})
    config = KalshiSimConfig(seed=3, faults=FaultPlan(rules=(lose_one,)))
    async with run_kalshi_simulator(config) as sim:
        venue = venue_for(sim, account)
        conflator = Conflator()
        feed = MarketDataFeed(venue, [MARKET], conflator)
        task = asyncio.create_task(feed.run())
        try:
            # the snapshot: the simulator's opening touch, 500 contracts on each side
            await eventually(
                lambda: (
                    touch_of(conflator)
                    == (Decimal("0.45"), Decimal(500), Decimal("0.47"), Decimal(500))
                ),
                message="no quote from the book's snapshot",
            )
            first_sid = book_sid(sim)
            assert first_sid is not None

            # four levels change; the first delta is lost on the way
            sim.state.set_quote(MARKET, bid=Decimal("0.40"), ask=Decimal("0.43"), size=Decimal(70))
            await eventually(
                lambda: (
                    touch_of(conflator)
                    == (Decimal("0.40"), Decimal(70), Decimal("0.43"), Decimal(70))
                ),
                message="the book never came right after the gap",
            )
            assert sim.state.fault_counts() == {"orderbook_gap": 1}
            second_sid = await eventually(lambda: book_sid(sim))
            assert second_sid != first_sid, "a fresh subscription, not the old one"

            # deltas on the new subscription apply as usual
            sim.state.set_quote(MARKET, bid=Decimal("0.40"), ask=Decimal("0.43"), size=Decimal(60))
            await eventually(
                lambda: (
                    touch_of(conflator)
                    == (Decimal("0.40"), Decimal(60), Decimal("0.43"), Decimal(60))
                )
            )
            assert feed.restarts == 0, "the book resynchronised on the same connection"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await venue.close()

    with metrics_server() as url:
        metrics = await scrape(url)
    assert metrics.value("tradectl_orderbook_gaps_total", account=account) == 1


async def test_public_trades_reach_the_rolling_volume_of_the_liquidity_check() -> None:
    account = f"trades-{uuid.uuid4().hex[:8]}"
    async with run_kalshi_simulator(KalshiSimConfig(seed=4)) as sim:
        venue = venue_for(sim, account)
        conflator = Conflator()
        task = asyncio.create_task(MarketDataFeed(venue, [MARKET], conflator).run())
        try:
            await eventually(lambda: touch_of(conflator) is not None)
            assert conflator.volumes.volume(MARKET, timedelta(minutes=1), utc_now()) is None
            sim.state.public_trade(
                MARKET, price=Decimal("0.47"), quantity=Decimal(12), taker=Side.BUY
            )
            sim.state.public_trade(
                MARKET, price=Decimal("0.45"), quantity=Decimal(8), taker=Side.SELL
            )
            await eventually(
                lambda: (
                    conflator.volumes.volume(MARKET, timedelta(minutes=1), utc_now()) == Decimal(20)
                ),
                message="the trades never reached the volume tracker",
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await venue.close()


async def test_our_fill_is_a_public_trade_and_takes_its_size_off_the_book() -> None:
    async with run_kalshi_simulator(KalshiSimConfig(seed=6)) as sim:
        venue = venue_for(sim, f"own-{uuid.uuid4().hex[:8]}")
        conflator = Conflator()
        task = asyncio.create_task(MarketDataFeed(venue, [MARKET], conflator).run())
        try:
            await eventually(lambda: touch_of(conflator) is not None)
            await venue.submit(
                OrderRequest(
                    client_order_id=ClientOrderId("own-take"),
                    symbol=MARKET,
                    side=Side.BUY,
                    type=OrderType.LIMIT,
                    quantity=Decimal(30),
                    limit_price=Decimal("0.47"),
                    time_in_force=TimeInForce.IOC,
                )
            )
            await eventually(
                lambda: (
                    touch_of(conflator)
                    == (Decimal("0.45"), Decimal(500), Decimal("0.47"), Decimal(470))
                ),
                message="the book never showed the 30 contracts taken",
            )
            await eventually(
                lambda: (
                    conflator.volumes.volume(MARKET, timedelta(minutes=1), utc_now()) == Decimal(30)
                )
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await venue.close()
