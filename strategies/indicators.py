"""Moving averages of closes, kept by the strategy host as bars arrive, behind
:meth:`strategies.base.Snapshot.sma`.

A strategy that recomputed its moving averages from the snapshot's bars paid a sum over the whole
window on every bar (and a tuple of closes to sum over); the host keeps one running sum per window
instead: one close in, one out, one division. A window is tracked from the first time a strategy
asks for it, seeded from the bars already held. The sums are exact decimal sums (prices have a
handful of digits; a sum of thousands of them is far within the 28 digits of the default
context), so a running sum equals the sum over the window and the average is the same value a
strategy computing it from the closes gets.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from engine.domain.market import Bar
from engine.domain.types import Symbol

_ZERO = Decimal(0)


class RollingCloses:
    """One symbol's closed bars as the host holds them (the newest ``depth``), with the moving
    averages of every window a strategy asked for."""

    __slots__ = ("_closes", "_trim_at", "_windows", "averages", "count", "depth", "held")

    def __init__(self, depth: int) -> None:
        self.depth = depth
        #: the newest bars, oldest first: at least the newest ``depth`` (fewer while warming up),
        #: and a few more. When it grows long it is replaced by a new list of its newest bars,
        #: so a list handed out is only ever appended to (what :class:`HistoryBars` relies on)
        self.held: list[Bar] = []
        #: how many bars were ever appended: a snapshot's history is current while it is equal
        self.count = 0
        #: window -> its averages at the newest bars, newest last (as many as the depth holds)
        self.averages: dict[int, deque[Decimal]] = {}
        self._closes: deque[Decimal] = deque(maxlen=depth)
        #: per window tracked, ``[window, the running sum of its newest closes (once the history
        #: holds that many), its averages, the window as a Decimal]``: a list, quicker to walk
        #: and update on every bar
        self._windows: list[list[Any]] = []
        # a copy of ``depth`` bars every ``depth + 32`` appends: nothing per bar on average
        self._trim_at = 2 * depth + 32

    @property
    def bars(self) -> tuple[Bar, ...]:
        """The newest ``depth`` bars, oldest first."""
        return tuple(self.held[-self.depth :])

    def append(self, bar: Bar) -> None:
        closes = self._closes
        close = bar.close
        held = len(closes)
        for window in self._windows:
            n = window[0]
            if held >= n:  # a full window before: its oldest close leaves, this one comes in
                total = window[1] - closes[-n] + close
            elif held == n - 1:  # the first full window
                total = sum(closes, close)
            else:
                continue
            window[1] = total
            window[2].append(total / window[3])
        closes.append(close)
        bars = self.held
        if len(bars) >= self._trim_at:
            # a new list: snapshots that hold the old one keep the bars they were given
            bars = self.held = bars[-self.depth :]
        bars.append(bar)
        self.count += 1

    def sma(self, window: int, ago: int = 0) -> Decimal | None:
        """The average of the ``window`` closes ending ``ago`` bars before the newest; ``None``
        while fewer bars are held."""
        averages = self.averages.get(window)
        if averages is None:
            averages = self._track(window)
        if 0 <= ago < len(averages):
            return averages[-1 - ago]
        if ago < 0:
            raise ValueError(f"ago must be >= 0, got {ago}")
        return None

    def _track(self, n: int) -> deque[Decimal]:
        depth = self._closes.maxlen or 1
        if not 1 <= n <= depth:
            raise ValueError(f"an average over {n} bars needs 1..{depth} bars of history")
        closes = list(self._closes)
        totals = [sum(closes[end - n : end], _ZERO) for end in range(n, len(closes) + 1)]
        averages = deque((total / n for total in totals), maxlen=depth - n + 1)
        self.averages[n] = averages
        # the divisor as a Decimal: the same quotient, without converting the int on every bar
        self._windows.append([n, totals[-1] if totals else None, averages, Decimal(n)])
        return averages


class HistoryBars(Mapping[Symbol, tuple[Bar, ...]]):
    """:attr:`Snapshot.bars <strategies.base.Snapshot.bars>` as the host hands it: each
    symbol's newest closed bars as of the decision, oldest first, copied into a tuple only when
    read (most strategies read only their averages: no copy of the window on every bar).

    A view, not a copy, yet it never changes: it keeps each symbol's list of bars and its length
    at the decision, and the host only appends to a list it has handed out (it starts a new one
    to trim). :meth:`current` gives the host's running averages while no bar came since."""

    __slots__ = ()

    def current(self, symbol: Symbol) -> RollingCloses | None:
        """The host's history of ``symbol`` while no bar has come since this view was taken
        (its averages are this decision's), else ``None``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"


class ManySymbolBars(HistoryBars):
    """:class:`HistoryBars` of a strategy trading several symbols."""

    __slots__ = ("_counts", "_ends", "_lists", "_tuples", "history")

    def __init__(self, history: Mapping[Symbol, RollingCloses]) -> None:
        self.history = history
        self._lists = {s: h.held for s, h in history.items()}
        self._ends = {s: len(held) for s, held in self._lists.items()}
        self._counts = {s: h.count for s, h in history.items()}
        self._tuples: dict[Symbol, tuple[Bar, ...]] = {}

    def current(self, symbol: Symbol) -> RollingCloses | None:
        rolling = self.history.get(symbol)
        if rolling is None or rolling.count != self._counts[symbol]:
            return None
        return rolling

    def __getitem__(self, symbol: Symbol) -> tuple[Bar, ...]:
        bars = self._tuples.get(symbol)
        if bars is None:
            held = self._lists[symbol]  # KeyError: not one of the strategy's symbols
            end = self._ends[symbol]
            depth = self.history[symbol].depth
            bars = self._tuples[symbol] = tuple(held[max(end - depth, 0) : end])
        return bars

    def __iter__(self) -> Iterator[Symbol]:
        return iter(self._lists)

    def __len__(self) -> int:
        return len(self._lists)


class OneSymbolBars(HistoryBars):
    """:class:`HistoryBars` of a strategy trading one symbol (most): a handful of attributes,
    taken on every bar, instead of a dict of each."""

    __slots__ = ("_bars", "count", "end", "held", "rolling", "symbol")

    def __init__(self, symbol: Symbol, rolling: RollingCloses) -> None:
        self.symbol = symbol
        #: the host's history, and its count and list of bars at the decision
        self.rolling = rolling
        self.count = rolling.count
        held = self.held = rolling.held
        self.end = len(held)
        self._bars: tuple[Bar, ...] | None = None

    def current(self, symbol: Symbol) -> RollingCloses | None:
        rolling = self.rolling
        if symbol != self.symbol or rolling.count != self.count:
            return None
        return rolling

    def __getitem__(self, symbol: Symbol) -> tuple[Bar, ...]:
        if symbol != self.symbol:
            raise KeyError(symbol)
        bars = self._bars
        if bars is None:
            end = self.end
            bars = self._bars = tuple(self.held[max(end - self.rolling.depth, 0) : end])
        return bars

    def __iter__(self) -> Iterator[Symbol]:
        return iter((self.symbol,))

    def __len__(self) -> int:
        return 1


def history_bars(history: Mapping[Symbol, RollingCloses]) -> HistoryBars:
    """The snapshot's bars over the host's ``history`` of one strategy, as of now."""
    if len(history) == 1:
        ((symbol, rolling),) = history.items()
        return OneSymbolBars(symbol, rolling)
    return ManySymbolBars(history)


def sma_of(closes: tuple[Decimal, ...], n: int, ago: int = 0) -> Decimal | None:
    """:meth:`RollingCloses.sma` over a tuple of closes (a snapshot without the host's running
    averages, e.g. the test harness's)."""
    if n < 1:
        raise ValueError(f"an average over {n} bars needs at least 1 bar")
    if ago < 0:
        raise ValueError(f"ago must be >= 0, got {ago}")
    end = len(closes) - ago
    if end < n:
        return None
    return sum(closes[end - n : end], _ZERO) / n
