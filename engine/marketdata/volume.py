"""Rolling traded volume per symbol, for the liquidity check (``max_volume_fraction``).

Fed by the conflator with the venue's public trades and, for symbols without a trade stream,
its closed bars (klines, or a backtest's bars): a symbol that has sent a trade counts trades
only, so a venue streaming both never counts the same volume twice. Volume is kept in
one-second buckets by our receipt time (the clock the risk gate judges with), pruned to the
longest window anyone asked for, so memory is bounded by the window, not by the trade rate.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine.domain.market import Bar, Trade
from engine.domain.types import Symbol

_ZERO = Decimal(0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _second(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(seconds=1)


class VolumeTracker:
    def __init__(self, *, retain: timedelta = timedelta(hours=1)) -> None:
        self.retain = retain
        self._buckets: dict[Symbol, deque[tuple[int, Decimal]]] = {}
        self._from_trades: set[Symbol] = set()
        self._bar_interval: dict[Symbol, str] = {}

    def keep_at_least(self, window: timedelta) -> None:
        """Retain enough history to answer for ``window`` (the gate asks for its limits')."""
        self.retain = max(self.retain, window)

    def on_trade(self, trade: Trade) -> None:
        if trade.symbol not in self._from_trades:
            # Trades are finer than bars: from now on they alone count for this symbol.
            self._from_trades.add(trade.symbol)
            self._buckets.pop(trade.symbol, None)
        self._add(trade.symbol, trade.received_at, trade.quantity)

    def on_bar(self, bar: Bar) -> None:
        # A bar built from quotes has no volume: it says nothing, and must not make the volume
        # look known (and zero).
        if not bar.closed or bar.symbol in self._from_trades or bar.volume <= 0:
            return
        # bars of two intervals cover the same trades: the first interval seen counts
        if self._bar_interval.setdefault(bar.symbol, bar.interval) != bar.interval:
            return
        self._add(bar.symbol, bar.received_at, bar.volume)

    def _add(self, symbol: Symbol, at: datetime, qty: Decimal) -> None:
        buckets = self._buckets.setdefault(symbol, deque())
        second = _second(at)
        if buckets and buckets[-1][0] >= second:
            # same second (or a late event): fold into the newest bucket
            last_second, total = buckets[-1]
            buckets[-1] = (last_second, total + qty)
        else:
            buckets.append((second, qty))
        horizon = second - int(self.retain.total_seconds()) - 1
        while buckets and buckets[0][0] < horizon:
            buckets.popleft()

    def volume(self, symbol: Symbol, window: timedelta, now: datetime) -> Decimal | None:
        """Traded quantity of ``symbol`` received in the last ``window`` before ``now``;
        ``None`` when no volume was ever seen for it (unknown is not zero)."""
        buckets = self._buckets.get(symbol)
        if buckets is None:
            return None
        since = _second(now - window)
        return sum((qty for second, qty in buckets if second > since), _ZERO)
