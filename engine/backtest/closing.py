"""A replay's closing quote: what a bar strategy deciding in memory is shown as its quotes."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from engine.domain.market import Bar, Quote
from engine.domain.types import Symbol
from strategies.base import QuotesOfBar


class ClosingQuotes(Mapping[Symbol, Quote]):
    """The snapshot's quotes on a bar decided in memory: the bar's closing quote, made by
    ``make(mid, bar, at)`` on first read (most bars nothing reads it). Only without a
    participation cap, whose quote sizes draw from the run's random stream and must be drawn
    in order."""

    __slots__ = ("_bar", "_make", "_quote", "_symbol")

    def __init__(
        self, symbol: Symbol, make: Callable[[Decimal, Bar, datetime], Quote], bar: Bar
    ) -> None:
        self._symbol = symbol
        self._make = make
        self._bar = bar
        self._quote: Quote | None = None

    def __getitem__(self, symbol: Symbol) -> Quote:
        if symbol != self._symbol:
            raise KeyError(symbol)
        quote = self._quote
        if quote is None:
            bar = self._bar
            quote = self._quote = self._make(bar.close, bar, bar.close_time)
        return quote

    def __iter__(self) -> Iterator[Symbol]:
        return iter((self._symbol,))

    def __len__(self) -> int:
        return 1


def to_tick(price: Decimal, tick: Decimal) -> Decimal:
    """``price`` on the grid of ``tick``, half to even."""
    return (price / tick).to_integral_value(rounding=ROUND_HALF_EVEN) * tick


class ClosingQuoteMaker(QuotesOfBar):
    """A replay's quotes for :meth:`Snapshot.assemble <strategies.base.Snapshot.assemble>`:
    one for the whole run, each decision's :class:`ClosingQuotes` made only if the snapshot's
    quotes are read (most bars: not at all), instead of one per bar."""

    __slots__ = ("_bar", "_last", "_make", "_symbol")

    def __init__(self, symbol: Symbol, make: Callable[[Decimal, Bar, datetime], Quote]) -> None:
        self._symbol = symbol
        self._make = make
        #: the last bar's closing quote, made once (an order bar reads it twice: the host for
        #: the decision price, the replay for the order's)
        self._bar: Bar | None = None
        self._last: Quote | None = None

    def of(self, bar: Bar) -> ClosingQuotes:
        return ClosingQuotes(self._symbol, self._closing, bar)

    def quote(self, bar: Bar) -> Quote:
        """``bar``'s closing quote: what ``of(bar)[symbol]`` gives."""
        return self._closing(bar.close, bar, bar.close_time)

    def _closing(self, mid: Decimal, bar: Bar, at: datetime) -> Quote:
        # (mid, at) are always bar's close and close time here: the bar alone is the key
        last = self._last
        if bar is not self._bar or last is None:
            last = self._last = self._make(mid, bar, at)
            self._bar = bar
        return last
