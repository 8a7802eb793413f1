"""TRADECTL_VENUE=kalshi_simulator: the engine's venue opens from settings, on the built-in
Kalshi simulator, and its market moves by itself (what `make run` trades)."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal

from engine.config import load_settings
from engine.domain.market import Quote
from engine.domain.types import Symbol, utc_now
from engine.venue_session import open_venue
from tests.helpers import eventually

MARKET = Symbol("KXTEST-26DEC31-T40")


async def test_the_kalshi_simulator_opens_from_settings_and_its_touch_walks() -> None:
    settings = load_settings(venue="kalshi_simulator", seed=3, kalshi_read_lag_s=0)
    async with open_venue(settings, (MARKET,), utc_now) as session:
        assert session.venue.name == "kalshi-simulator"
        assert session.driver is not None
        rules = await session.venue.instrument_rules(MARKET)
        assert (rules.tick_size, rules.quote_asset) == (Decimal("0.01"), "USD")
        bids: set[Decimal] = set()

        async def watch() -> None:
            async for event in session.venue.market_stream([MARKET]):
                if isinstance(event, Quote):
                    bids.add(event.bid)

        tasks = [asyncio.create_task(watch()), asyncio.create_task(session.driver())]
        try:
            await eventually(lambda: len(bids) >= 2, message="the touch never moved")
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
