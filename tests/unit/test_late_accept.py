from __future__ import annotations

from datetime import timedelta

from pydantic import SecretStr

from engine.config import load_settings
from engine.domain.types import Symbol, utc_now
from engine.venue_session import open_venue
from engine.venues.binance import BinanceConfig, BinanceVenue
from engine.venues.metrics import VenueMetrics


def test_binance_may_accept_a_request_up_to_its_recv_window_after_signing() -> None:
    venue = BinanceVenue(
        BinanceConfig(api_key="k", api_secret=SecretStr("s"), recv_window_ms=3000),
        metrics=VenueMetrics(account="acct", venue="binance"),
    )
    # plus a second for the error in our estimate of the venue's clock
    assert venue.late_accept == timedelta(seconds=4)


async def test_the_built_in_simulator_session_carries_its_late_accept_to_execution() -> None:
    settings = load_settings(venue="simulator", database_url="postgresql://unused/x")
    async with open_venue(settings, (Symbol("BTCUSDT"),), utc_now) as session:
        assert session.late_accept == timedelta(seconds=6)  # the default recvWindow, 5 s
