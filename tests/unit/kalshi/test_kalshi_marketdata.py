"""Kalshi market data from the documented WebSocket examples (tests/resources/kalshi): the order
book's snapshot and deltas into quotes with the depth at the touch, a gap counted per account,
public trades into trades for the volume check."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from engine.domain.market import Quote, Trade
from engine.domain.types import Side, Symbol, TradeId, VenueName
from engine.venues.kalshi import schemas
from engine.venues.kalshi.marketdata import KalshiMarketData
from engine.venues.metrics import MALFORMED_MESSAGES, MARKET_STREAM, ORDERBOOK_GAPS, VenueMetrics

from .conftest import raw

NOW = datetime(2024, 12, 1, 10, 0, 1, tzinfo=UTC)
_ENVELOPE = msgspec.json.Decoder(schemas.WsEnvelope)
MARKET = Symbol("FED-23DEC-T3.00")


def frame(name: str, replace: tuple[bytes, bytes] | None = None) -> schemas.WsEnvelope:
    data = raw(name)
    if replace is not None:
        data = data.replace(*replace)
    return _ENVELOPE.decode(data)


def subscribed() -> tuple[KalshiMarketData, VenueMetrics]:
    metrics = VenueMetrics(account=f"md-{uuid.uuid4().hex[:8]}", venue="kalshi")
    data = KalshiMarketData(venue=VenueName("kalshi"), metrics=metrics, now=lambda: NOW)
    assert data.on_frame(frame("ws_subscribed.json")) is None
    return data, metrics


def gaps(metrics: VenueMetrics) -> float:
    return float(ORDERBOOK_GAPS.labels(metrics.account, metrics.venue)._value.get())


def test_the_documented_snapshot_is_a_quote_with_the_depth_at_the_best_levels() -> None:
    data, _ = subscribed()
    quote = data.on_frame(frame("ws_orderbook_snapshot.json"))
    assert quote == Quote(
        symbol=MARKET,
        bid=Decimal("0.22"),
        bid_size=Decimal(333),
        ask=Decimal("0.54"),  # NO levels at YES prices: we subscribe with use_yes_price
        ask_size=Decimal(20),
        venue_ts=None,
        received_at=NOW,
    )


def test_a_delta_at_the_touch_moves_the_quote() -> None:
    data, _ = subscribed()
    data.on_frame(frame("ws_orderbook_snapshot.json"))
    quote = data.on_frame(frame("ws_orderbook_delta.json", (b'"0.960"', b'"0.2200"')))
    assert isinstance(quote, Quote)
    assert (quote.bid, quote.bid_size) == (Decimal("0.22"), Decimal(279))
    assert quote.venue_ts == datetime(2022, 11, 22, 20, 44, 1, tzinfo=UTC)


def test_the_documented_delta_does_not_fit_the_documented_snapshot_and_is_a_counted_gap() -> None:
    # the docs' delta takes 54 from a YES level at 0.96 the docs' snapshot does not have
    data, metrics = subscribed()
    data.on_frame(frame("ws_orderbook_snapshot.json"))
    assert data.on_frame(frame("ws_orderbook_delta.json")) is None
    assert gaps(metrics) == 1
    assert data.books.sid is None, "the books wait for a resubscription"


def test_a_skipped_seq_is_a_counted_gap() -> None:
    data, metrics = subscribed()
    data.on_frame(frame("ws_orderbook_snapshot.json"))
    later = frame("ws_orderbook_delta.json", (b'"seq": 3', b'"seq": 5'))
    assert data.on_frame(later) is None
    assert gaps(metrics) == 1


def test_the_documented_trade_is_a_trade_sold_by_its_taker() -> None:
    data, _ = subscribed()
    trade = data.on_frame(frame("ws_trade.json"))
    assert trade == Trade(
        symbol=Symbol("HIGHNY-22DEC23-B53.5"),
        trade_id=TradeId("d91bc706-ee49-470d-82d8-11418bda6fed"),
        price=Decimal("0.360"),
        quantity=Decimal(136),
        aggressor=Side.SELL,  # taker_side "no": sold YES
        venue_ts=datetime(2022, 11, 22, 20, 44, 1, tzinfo=UTC),
        received_at=NOW,
    )


def test_a_trade_with_text_for_a_count_is_skipped_and_counted() -> None:
    data, metrics = subscribed()
    assert data.on_frame(frame("ws_trade.json", (b'"136.00"', b'"lots"'))) is None
    skipped = MALFORMED_MESSAGES.labels(metrics.account, metrics.venue, MARKET_STREAM)
    assert skipped._value.get() == 1


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1E+999999"])
def test_a_delta_of_no_finite_size_is_skipped_and_the_book_kept(value: str) -> None:
    data, metrics = subscribed()
    data.on_frame(frame("ws_orderbook_snapshot.json"))
    hostile = frame("ws_orderbook_delta.json", (b'"-54.00"', f'"{value}"'.encode()))
    assert data.on_frame(hostile) is None
    assert gaps(metrics) == 0
    book = data.books.book(MARKET)
    assert book is not None
    assert book.bids[Decimal("0.22")] == 333
