"""The market-data hot path: a faster construction and decode, the same objects and errors."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.domain.market import Quote
from engine.domain.types import Symbol
from engine.exceptions import MalformedMessage
from engine.venues.binance.market_frames import decode_market_frame

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
BOOK = b'{"u":7,"s":"BTCUSDT","b":"30000.01","B":"1.50000","a":"30000.02","A":"0.25000"}'


def slow_quote() -> Quote:
    return Quote(
        symbol=Symbol("BTCUSDT"),
        bid=Decimal("30000.01"),
        bid_size=Decimal("1.50000"),
        ask=Decimal("30000.02"),
        ask_size=Decimal("0.25000"),
        venue_ts=None,
        received_at=NOW,
        sequence=7,
    )


def test_from_decoded_builds_the_same_frozen_quote() -> None:
    fast = Quote.from_decoded(
        Symbol("BTCUSDT"),
        Decimal("30000.01"),
        Decimal("1.50000"),
        Decimal("30000.02"),
        Decimal("0.25000"),
        None,
        NOW,
        7,
    )
    assert fast == slow_quote()
    assert hash(fast) == hash(slow_quote())
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow_quote())
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.bid = Decimal(1)  # type: ignore[misc]


@pytest.mark.parametrize(
    "frame",
    [
        b'{"stream":"btcusdt@bookTicker","data":' + BOOK + b"}",
        b'{ "stream": "btcusdt@bookTicker", "data": ' + BOOK + b" }",
        b'{"data":' + BOOK + b',"stream":"btcusdt@bookTicker"}',
    ],
)
def test_book_ticker_frames_decode_to_the_quote_in_any_layout(frame: bytes) -> None:
    assert decode_market_frame(frame, received_at=NOW) == slow_quote()


def test_a_book_ticker_hint_on_another_stream_does_not_make_it_a_quote() -> None:
    # Shaped like a bookTicker payload and naming it early, but the stream is a trade stream.
    frame = b'{"stream":"x@trade","data":{"u":1,"s":"@bookTicker","b":"1","B":"1","a":"2","A":"1"}}'
    with pytest.raises(MalformedMessage, match="undecodable binance market frame"):
        decode_market_frame(frame, received_at=NOW)


def test_a_malformed_book_ticker_is_still_reported_as_malformed() -> None:
    frame = b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"x"}}'
    with pytest.raises(MalformedMessage):
        decode_market_frame(frame, received_at=NOW)


def test_subscription_answers_are_still_skipped() -> None:
    assert decode_market_frame(b'{"result":null,"id":1}', received_at=NOW) is None
