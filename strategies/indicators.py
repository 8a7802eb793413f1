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
from collections.abc import Mapping
from decimal import Decimal

from engine.domain.market import Bar
from engine.domain.types import Symbol

_ZERO = Decimal(0)


class RollingCloses:
    """One symbol's closed bars as the host holds them (the newest ``depth``), with the moving
    averages of every window a strategy asked for."""

    __slots__ = ("_closes", "_sums", "averages", "bars")

    def __init__(self, depth: int) -> None:
        #: the bar history itself: the host's window, oldest first
        self.bars: deque[Bar] = deque(maxlen=depth)
        #: window -> its averages at the newest bars, newest last (as many as the depth holds)
        self.averages: dict[int, deque[Decimal]] = {}
        self._closes: deque[Decimal] = deque(maxlen=depth)
        #: window -> the running sum of its newest closes (once the history holds that many)
        self._sums: dict[int, Decimal] = {}

    def append(self, bar: Bar) -> None:
        closes = self._closes
        close = bar.close
        held = len(closes)
        sums = self._sums
        for n, averages in self.averages.items():
            if held >= n:  # a full window before: its oldest close leaves, this one comes in
                total = sums[n] - closes[-n] + close
            elif held == n - 1:  # the first full window
                total = sum(closes, close)
            else:
                continue
            sums[n] = total
            averages.append(total / n)
        closes.append(close)
        self.bars.append(bar)

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
        if totals:
            self._sums[n] = totals[-1]
        averages = deque((total / n for total in totals), maxlen=depth - n + 1)
        self.averages[n] = averages
        return averages


class RollingView:
    """A snapshot's handle on the host's running averages, valid while its decision runs: the
    host closes it when ``decide`` returns, and a snapshot kept past that (against the contract,
    but possible) computes from its own bars instead of reading averages that moved on."""

    __slots__ = ("history",)

    def __init__(self, history: Mapping[Symbol, RollingCloses]) -> None:
        self.history: Mapping[Symbol, RollingCloses] | None = history

    def close(self) -> None:
        self.history = None


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
