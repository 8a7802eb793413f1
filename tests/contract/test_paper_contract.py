"""The venue contract run against the in-process paper venue, on a crypto pair and on a
prediction-market contract (whole contracts priced in (0, 1))."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine.domain.market import Quote
from engine.domain.types import Asset, Symbol
from engine.venues.paper import BTCUSDT, DEFAULT_BALANCES, PRES_YES, PaperVenue, default_paper_venue
from tests.contract.venue_contract import VenueContract, VenueHarness


class SteppingClock:
    """A deterministic clock: every reading is one millisecond after the previous one."""

    def __init__(self, start: datetime = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) -> None:
        self._now = start

    def __call__(self) -> datetime:
        self._now += timedelta(milliseconds=1)
        return self._now


class PaperMarketDriver:
    """The suite's :class:`~tests.contract.venue_contract.MarketDriver` for the paper venue."""

    def __init__(self, venue: PaperVenue, clock: Callable[[], datetime]) -> None:
        self._venue = venue
        self._clock = clock

    async def set_quote(self, symbol: Symbol, *, bid: Decimal, ask: Decimal, size: Decimal) -> None:
        now = self._clock()
        self._venue.set_quote(
            Quote(
                symbol=symbol,
                bid=bid,
                bid_size=size,
                ask=ask,
                ask_size=size,
                venue_ts=now,
                received_at=now,
            )
        )


@contextlib.asynccontextmanager
async def paper_harness(
    symbol: Symbol, price: Decimal, quantity: Decimal
) -> AsyncIterator[VenueHarness]:
    clock = SteppingClock()
    # The suite sells as well as buys: hold some of every asset, prediction contracts included.
    funded = {**DEFAULT_BALANCES, Asset("PRES-YES"): Decimal(1000)}
    venue = default_paper_venue(seed=7, clock=clock, balances=funded)
    try:
        yield VenueHarness(
            venue=venue,
            market=PaperMarketDriver(venue, clock),
            symbol=symbol,
            price=price,
            quantity=quantity,
        )
    finally:
        await venue.close()


class TestPaperVenueSpotContract(VenueContract):
    def open_venue(self) -> contextlib.AbstractAsyncContextManager[VenueHarness]:
        return paper_harness(BTCUSDT, Decimal("30000.00"), Decimal("0.002"))


class TestPaperVenuePredictionMarketContract(VenueContract):
    def open_venue(self) -> contextlib.AbstractAsyncContextManager[VenueHarness]:
        return paper_harness(PRES_YES, Decimal("0.50"), Decimal("10"))
