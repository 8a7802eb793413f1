"""Flat one-minute bars for unit tests: open = high = low = close, volume 1, closed, received
as they close."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine.domain.market import Bar
from engine.domain.types import Symbol

BTC = Symbol("BTCUSDT")
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def flat_bar(minute: int, close: str = "100", symbol: Symbol = BTC) -> Bar:
    """The bar opening ``minute`` minutes after :data:`T0`, at ``close`` throughout."""
    opened = T0 + timedelta(minutes=minute)
    c = Decimal(close)
    return Bar(
        symbol=symbol,
        interval="1m",
        open_time=opened,
        close_time=opened + timedelta(minutes=1),
        open=c,
        high=c,
        low=c,
        close=c,
        volume=Decimal(1),
        closed=True,
        received_at=opened + timedelta(minutes=1),
    )
