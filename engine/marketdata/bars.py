"""Bars built from quotes, and the interval vocabulary (``"1m"``, ``"5s"``, ``"1d"``).

Venues that stream quotes only (the random walk of ``make run``, prediction markets) still feed
bar strategies: a :class:`BarBuilder` aggregates the mid price of each quote into bars aligned on
multiples of the interval since the Unix epoch, and emits the bar when the first quote of a later
interval arrives (or when :meth:`BarBuilder.close_if_due` sees the interval has ended).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine.domain.market import Bar, Quote
from engine.domain.types import Symbol

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


def parse_interval(text: str) -> timedelta:
    """``"1m"`` → one minute. Units: s, m, h, d; the count must be a positive integer."""
    match = _INTERVAL.match(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(
            f"interval {text!r} is not a positive whole number of s/m/h/d, e.g. '5s', '1m', '1d'"
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def interval_name(interval: timedelta) -> str:
    """The canonical name of an interval: the largest unit that divides it (90s → ``"90s"``)."""
    seconds = interval.total_seconds()
    if seconds <= 0 or seconds != int(seconds):
        raise ValueError(f"bar interval must be a positive whole number of seconds, got {interval}")
    whole = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def floor_time(ts: datetime, interval: timedelta) -> datetime:
    """Start of the ``interval``-long window (aligned on the Unix epoch) that contains ``ts``."""
    return _EPOCH + ((ts - _EPOCH) // interval) * interval


class BarBuilder:
    """Aggregates one symbol's quotes (mid) into bars of one interval.

    The quote's venue time decides which bar it belongs to (receipt time when the venue gave
    none), so replaying the same quotes builds the same bars. A bar's ``close_time`` is the end of
    its interval (exclusive); ``volume`` is zero because quotes carry no traded volume. A quote
    older than the bar being built is ignored: a closed bar is never reopened.
    """

    __slots__ = (
        "_close",
        "_high",
        "_last_closed_open",
        "_low",
        "_open",
        "_open_time",
        "interval",
        "name",
        "symbol",
    )

    def __init__(self, symbol: Symbol, interval: timedelta) -> None:
        self.symbol = symbol
        self.interval = interval
        self.name = interval_name(interval)
        self._open_time: datetime | None = None
        self._last_closed_open: datetime | None = None
        self._open = self._high = self._low = self._close = Decimal(0)

    def on_quote(self, quote: Quote) -> Bar | None:
        """Add a quote; return the bar it closed, if it opened a later interval."""
        if quote.symbol != self.symbol:
            raise ValueError(f"bar builder for {self.symbol} got a quote for {quote.symbol}")
        ts = quote.venue_ts if quote.venue_ts is not None else quote.received_at
        start = floor_time(ts, self.interval)
        price = quote.mid
        closed: Bar | None = None
        if self._open_time is not None:
            if start == self._open_time:
                if price > self._high:
                    self._high = price
                elif price < self._low:
                    self._low = price
                self._close = price
                return None
            if start < self._open_time:
                return None
            closed = self._finish(quote.received_at)
        elif self._last_closed_open is not None and start <= self._last_closed_open:
            return None
        self._open_time = start
        self._open = self._high = self._low = self._close = price
        return closed

    def close_if_due(self, now: datetime) -> Bar | None:
        """Close the bar being built when its interval ended before ``now``."""
        if self._open_time is None or now < self._open_time + self.interval:
            return None
        return self._finish(now)

    def current(self, received_at: datetime) -> Bar | None:
        """The bar being built, marked not closed; ``None`` before the first quote."""
        if self._open_time is None:
            return None
        return self._bar(self._open_time, closed=False, received_at=received_at)

    def _finish(self, received_at: datetime) -> Bar:
        assert self._open_time is not None
        bar = self._bar(self._open_time, closed=True, received_at=received_at)
        self._last_closed_open = self._open_time
        self._open_time = None
        return bar

    def _bar(self, open_time: datetime, *, closed: bool, received_at: datetime) -> Bar:
        return Bar(
            symbol=self.symbol,
            interval=self.name,
            open_time=open_time,
            close_time=open_time + self.interval,
            open=self._open,
            high=self._high,
            low=self._low,
            close=self._close,
            volume=Decimal(0),
            closed=closed,
            received_at=received_at,
        )
