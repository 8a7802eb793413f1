"""Kalshi WebSocket messages and REST rows → reports, from the documented examples."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from engine.domain.types import Side, VenueName, VenueOrderStatus
from engine.exceptions import MalformedMessage
from engine.venues.base import FillReport, OrderReport
from engine.venues.kalshi import parsing, schemas
from engine.venues.kalshi.stream import decode_market, decode_user
from engine.venues.metrics import VenueMetrics

from .conftest import raw

METRICS = VenueMetrics(account="test", venue="kalshi")

NOW = datetime(2024, 12, 1, 10, 0, 1, tzinfo=UTC)
VENUE = VenueName("kalshi")
_ENVELOPE = msgspec.json.Decoder(schemas.WsEnvelope)


def test_a_fill_message_carries_the_client_order_id() -> None:
    event = decode_user(
        _ENVELOPE.decode(raw("ws_fill.json")), venue=VENUE, metrics=METRICS, received_at=NOW
    )
    assert isinstance(event, FillReport)
    assert (event.client_order_id, event.side, event.quantity, event.price, event.fee) == (
        "my-order-1",
        Side.BUY,
        Decimal("278.00"),
        Decimal("0.750"),
        Decimal("3.6500"),
    )
    assert event.venue_ts == datetime(2022, 12, 24, 16, 29, 57, tzinfo=UTC)


def test_a_fill_message_without_a_fee_is_skipped_for_the_rest_fill_to_bring_it() -> None:
    frame = _ENVELOPE.decode(raw("ws_fill.json").replace(b'"fee_cost": "3.6500",', b""))
    assert decode_user(frame, venue=VENUE, metrics=METRICS, received_at=NOW) is None


def test_a_user_order_message_is_an_order_report_on_the_yes_book() -> None:
    event = decode_user(
        _ENVELOPE.decode(raw("ws_user_order.json")), venue=VENUE, metrics=METRICS, received_at=NOW
    )
    assert isinstance(event, OrderReport)
    assert (event.client_order_id, event.status, event.side, event.limit_price) == (
        "my-order-1",
        VenueOrderStatus.NEW,
        Side.BUY,
        Decimal("0.3500"),
    )


def test_a_ticker_message_is_the_yes_touch() -> None:
    quote = decode_market(_ENVELOPE.decode(raw("ws_ticker.json")), metrics=METRICS, received_at=NOW)
    assert quote is not None
    assert (quote.bid, quote.ask, quote.bid_size, quote.ask_size) == (  # type: ignore[union-attr]
        Decimal("0.450"),
        Decimal("0.530"),
        Decimal("300.00"),
        Decimal("150.00"),
    )


@pytest.mark.parametrize(
    ("fields", "side"),
    [
        ({"book_side": "ask"}, Side.SELL),
        ({"outcome_side": "no"}, Side.SELL),
        ({"side": "no", "action": "buy"}, Side.SELL),
        ({"side": "no", "action": "sell"}, Side.BUY),
        ({"side": "yes", "action": "sell"}, Side.SELL),
    ],
)
def test_direction_is_a_buy_or_sell_of_yes(fields: dict[str, str], side: Side) -> None:
    arguments: dict[str, str | None] = {"book_side": None, **fields}
    assert parsing.direction(**arguments) is side  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "1.5", "-0.1"])
def test_a_price_outside_zero_to_one_or_not_finite_is_malformed(bad: str) -> None:
    with pytest.raises(MalformedMessage):
        parsing.price(Decimal(bad), "yes_price_dollars")


def test_an_ioc_remainder_canceled_by_the_venue_is_expired() -> None:
    from engine.domain.types import TimeInForce

    assert (
        parsing.venue_status("canceled", Decimal(1), Decimal(2), TimeInForce.IOC)
        is VenueOrderStatus.EXPIRED
    )
    assert parsing.venue_status("canceled", Decimal(1), Decimal(2), None) is (
        VenueOrderStatus.CANCELED
    )
