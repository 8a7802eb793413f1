"""Normalized market data: what strategies see, whatever the venue.

Every event keeps the venue's timestamp and our receipt time side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

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

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> Decimal:
        return self.ask - self.bid


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
