"""Round trips from fills: what the report counts as trades."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine.backtest.metrics import round_trips
from engine.domain.types import (
    Asset,
    ClientOrderId,
    Side,
    Symbol,
    TradeId,
    VenueName,
    VenueOrderId,
)
from engine.venues.base import FillReport

T0 = datetime(2024, 1, 1, tzinfo=UTC)
USD = Asset("USD")


def fill(
    n: int, side: Side, qty: str, price: str, fee: str = "0", asset: str = "USD"
) -> FillReport:
    at = T0 + timedelta(hours=n)
    return FillReport(
        venue=VenueName("paper"),
        symbol=Symbol("X"),
        trade_id=TradeId(str(n)),
        client_order_id=ClientOrderId(f"c{n}"),
        venue_order_id=VenueOrderId(str(n)),
        side=side,
        quantity=Decimal(qty),
        price=Decimal(price),
        fee=Decimal(fee),
        fee_asset=Asset(asset),
        liquidity=None,
        venue_ts=at,
        received_at=at,
    )


def test_a_round_trip_runs_from_flat_to_flat_across_partial_fills() -> None:
    fills = [
        fill(0, Side.BUY, "1", "100", "0.1"),
        fill(1, Side.BUY, "1", "110", "0.1"),
        fill(2, Side.SELL, "1.5", "120", "0.1"),
        fill(3, Side.SELL, "0.5", "90", "0.1"),
    ]
    (trip,), still_open = round_trips(fills, USD, Decimal(95))
    assert still_open is None
    assert trip.quantity == 2
    assert trip.entry_price == 105
    assert trip.exit_price == Decimal("112.5")
    assert trip.pnl == Decimal("225") - Decimal("210") - Decimal("0.4")
    assert trip.duration == timedelta(hours=3)


def test_a_fill_through_zero_closes_one_trip_and_opens_the_next() -> None:
    fills = [fill(0, Side.BUY, "2", "100"), fill(1, Side.SELL, "3", "110")]
    (long,), short = round_trips(fills, USD, Decimal(100))
    assert long.direction == 1
    assert long.pnl == 20
    assert short is not None
    assert short.direction == -1
    assert short.quantity == 1
    assert short.pnl == 10  # sold at 110, marked at 100


def test_a_fee_in_the_base_asset_leaves_dust_that_counts_as_flat() -> None:
    # bought 100 shares paying 0.1 share; 99.9 held, 99 sellable at a lot step of 1
    fills = [
        fill(0, Side.BUY, "100", "10", "0.1", "X"),
        fill(1, Side.SELL, "99", "11", "0.99"),
        fill(2, Side.BUY, "100", "10", "0.1", "X"),
    ]
    (first,), second = round_trips(fills, USD, Decimal(10), dust=Decimal(1))
    assert first.quantity == 100
    assert first.exit_price == 11
    assert first.fees == Decimal("0.1") * 10 + Decimal("0.99")
    assert second is not None
    assert second.entry_time == T0 + timedelta(hours=2)
