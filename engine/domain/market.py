"""Normalized market data: what strategies see, whatever the venue.

Every event keeps the venue's timestamp and our receipt time side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.domain.types import Side, Symbol, TradeId


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    symbol: Symbol
    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal
    venue_ts: datetime | None
    received_at: datetime
    #: venue sequence number (Binance bookTicker ``u``) when the venue gives one
    sequence: int | None = None

    @classmethod
    def from_decoded(
        cls,
        symbol: Symbol,
        bid: Decimal,
        bid_size: Decimal,
        ask: Decimal,
        ask_size: Decimal,
        venue_ts: datetime | None,
        received_at: datetime,
        sequence: int | None,
    ) -> Quote:
        """Build a quote from values a typed decoder has already checked (msgspec).

        The same frozen object as ``Quote(...)``, in about half the time: the generated
        ``__init__`` parses keywords and calls ``object.__setattr__`` per field, which was the
        largest single cost per market-data message. Only for the decode hot path.
        """
        quote = _new(cls)
        _SET_SYMBOL(quote, symbol)
        _SET_BID(quote, bid)
        _SET_BID_SIZE(quote, bid_size)
        _SET_ASK(quote, ask)
        _SET_ASK_SIZE(quote, ask_size)
        _SET_VENUE_TS(quote, venue_ts)
        _SET_RECEIVED_AT(quote, received_at)
        _SET_SEQUENCE(quote, sequence)
        return quote

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> Decimal:
        return self.ask - self.bid


def _slot_setter(name: str) -> Any:
    # A slot's member descriptor writes the slot directly, past the frozen ``__setattr__``.
    return Quote.__dict__[name].__set__


_new = object.__new__
_QUOTE_FIELDS = (
    "symbol",
    "bid",
    "bid_size",
    "ask",
    "ask_size",
    "venue_ts",
    "received_at",
    "sequence",
)
# A field added to Quote without a setter here would be left unset by from_decoded: refuse to
# import rather than build half-initialised quotes.
if tuple(f.name for f in fields(Quote)) != _QUOTE_FIELDS:
    raise RuntimeError("Quote's fields changed: update Quote.from_decoded and _QUOTE_FIELDS")
(
    _SET_SYMBOL,
    _SET_BID,
    _SET_BID_SIZE,
    _SET_ASK,
    _SET_ASK_SIZE,
    _SET_VENUE_TS,
    _SET_RECEIVED_AT,
    _SET_SEQUENCE,
) = (_slot_setter(name) for name in _QUOTE_FIELDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Trade:
    """A public trade on the venue (not one of ours: those are fills)."""

    symbol: Symbol
    trade_id: TradeId
    price: Decimal
    quantity: Decimal
    aggressor: Side | None
    venue_ts: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    symbol: Symbol
    interval: str
    open_time: datetime
    close_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    closed: bool
    received_at: datetime


MarketEvent = Quote | Trade | Bar
