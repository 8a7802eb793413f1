"""Market data frames (combined streams: ``bookTicker``, ``trade``, ``kline``) → market events.

The quote path is the hottest code in the engine (hundreds of thousands of frames a second):
it decodes a frame in one pass and checks each number once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from engine.domain.market import Bar, MarketEvent, Quote, Trade
from engine.domain.types import Side, Symbol, TradeId
from engine.exceptions import MalformedMessage
from engine.venues.binance import schemas
from engine.venues.binance.parsing import ms_to_utc
from engine.venues.validation import (
    MAX_INTEGER_DIGITS,
    int_id,
    non_empty,
    non_negative,
    positive,
)

# -- market data ----------------------------------------------------------------------------

_COMBINED_DECODER = msgspec.json.Decoder(schemas.CombinedFrame)
_BOOK_DECODER = msgspec.json.Decoder(schemas.BookTicker)


class _BookTickerFrame(msgspec.Struct, frozen=True, gc=False):
    """A combined-stream ``bookTicker`` frame in one pass (the payload is not a ``Raw`` to
    decode a second time). ``gc=False``: it holds no containers, so the collector need not
    track the hundreds of thousands of these a busy stream allocates."""

    stream: str
    data: schemas.BookTicker


_BOOK_FRAME_DECODER = msgspec.json.Decoder(_BookTickerFrame)
#: the stream name sits in the frame's first bytes: ``{"stream":"<symbol>@bookTicker","data":``
_BOOK_HINT = b'@bookTicker"'
_HINT_WINDOW = 64
_TRADE_DECODER = msgspec.json.Decoder(schemas.TradeEvent)
_KLINE_DECODER = msgspec.json.Decoder(schemas.KlineEvent)


_MAX_DIGITS = MAX_INTEGER_DIGITS


def parse_book_ticker(bt: schemas.BookTicker, *, received_at: datetime) -> Quote:
    # msgspec has already checked every field's type (Decimal prices and sizes, int id in
    # range); what is left is the values. Inlined rather than through engine.venues.validation:
    # this runs for every quote, and a method call per check is what it can afford. is_signed
    # also refuses "-0", which no book carries. Only the upper magnitude bound is checked: a
    # finite 1E+999999999 overflows the first arithmetic on it, a tiny value just rounds to 0.
    b, bq, a, aq = bt.bid_price, bt.bid_qty, bt.ask_price, bt.ask_qty
    if (
        not (b.is_finite() and bq.is_finite() and a.is_finite() and aq.is_finite())
        or (b.is_signed() or bq.is_signed() or a.is_signed() or aq.is_signed())
        or (b.adjusted() >= _MAX_DIGITS or bq.adjusted() >= _MAX_DIGITS)
        or (a.adjusted() >= _MAX_DIGITS or aq.adjusted() >= _MAX_DIGITS)
    ):
        raise MalformedMessage(f"binance bookTicker with a bad price or size: {b} {bq} {a} {aq}")
    if not bt.symbol:
        raise MalformedMessage("binance bookTicker without a symbol")
    return Quote.from_decoded(
        Symbol(bt.symbol),
        b,
        bq,
        a,
        aq,
        None,  # the spot bookTicker carries no timestamp
        received_at,
        bt.update_id,
    )


def parse_trade(te: schemas.TradeEvent, *, received_at: datetime) -> Trade:
    return Trade(
        symbol=Symbol(non_empty(te.symbol, "binance trade symbol")),
        trade_id=TradeId(str(int_id(te.trade_id, "binance trade t"))),
        price=non_negative(te.price, "binance trade p"),
        quantity=positive(te.quantity, "binance trade q"),
        # buyer is the maker → the seller crossed the spread
        aggressor=Side.SELL if te.buyer_is_maker else Side.BUY,
        venue_ts=ms_to_utc(te.trade_time, "binance trade T"),
        received_at=received_at,
    )


def parse_kline(ke: schemas.KlineEvent, *, received_at: datetime) -> Bar:
    k = ke.kline
    return Bar(
        symbol=Symbol(non_empty(k.symbol, "binance kline symbol")),
        interval=non_empty(k.interval, "binance kline interval"),
        open_time=ms_to_utc(k.start_time, "binance kline t"),
        close_time=ms_to_utc(k.close_time, "binance kline T"),
        open=non_negative(k.open, "binance kline o"),
        high=non_negative(k.high, "binance kline h"),
        low=non_negative(k.low, "binance kline l"),
        close=non_negative(k.close, "binance kline c"),
        volume=non_negative(k.volume, "binance kline v"),
        closed=k.closed,
        received_at=received_at,
    )


def _stream_symbol_matches(stream: str, symbol: str) -> bool:
    # ``<symbol>@<channel>``: a payload for another symbol than the stream's is not trusted.
    return stream.partition("@")[0].lower() == symbol.lower()


def decode_market_frame(raw: bytes, *, received_at: datetime) -> MarketEvent | None:
    """One combined-stream frame → a market event. ``None`` for a subscription answer.

    Raises :class:`MalformedMessage` for anything else it cannot read, or whose values are out
    of range (non-finite or negative prices and sizes, timestamps outside 2000..2100).
    """
    try:
        if raw.find(_BOOK_HINT, 0, _HINT_WINDOW) != -1:
            # The hot path: most market-data frames are quotes. The hint only picks the
            # decoder; the decoded stream name decides, and anything else takes the general
            # path below. (The stream name's symbol is not compared with the payload's here:
            # the stream checks every quote's symbol against the ones it subscribed to.)
            try:
                book = _BOOK_FRAME_DECODER.decode(raw)
            except msgspec.DecodeError:
                pass
            else:
                if book.stream.endswith("@bookTicker"):
                    return parse_book_ticker(book.data, received_at=received_at)
        if raw.lstrip().startswith(b'{"result"'):
            return None
        frame = _COMBINED_DECODER.decode(raw)
        stream = frame.stream
        data = bytes(frame.data)
        event: MarketEvent
        if stream.endswith("@bookTicker"):
            event = parse_book_ticker(_BOOK_DECODER.decode(data), received_at=received_at)
        elif stream.endswith("@trade"):
            event = parse_trade(_TRADE_DECODER.decode(data), received_at=received_at)
        elif "@kline_" in stream:
            event = parse_kline(_KLINE_DECODER.decode(data), received_at=received_at)
        else:
            raise MalformedMessage(f"unexpected binance stream {stream[:80]!r}", raw=raw)
    except msgspec.DecodeError as exc:
        raise MalformedMessage(f"undecodable binance market frame: {exc}", raw=raw) from None
    except MalformedMessage as exc:
        if exc.raw:
            raise
        raise MalformedMessage(str(exc), raw=raw) from None
    if not _stream_symbol_matches(stream, event.symbol):
        raise MalformedMessage(
            f"binance stream {stream[:80]!r} carried {event.symbol[:40]!r}", raw=raw
        )
    return event


def stream_names(symbols: Sequence[str], channels: Sequence[str]) -> list[str]:
    """``<symbol>@<channel>`` names (symbols lowercase, as the venue requires)."""
    return [f"{s.lower()}@{c}" for s in symbols for c in channels]
