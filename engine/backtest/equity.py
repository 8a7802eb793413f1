"""A replay's equity curve: the equity marked at each bar's close (capital plus the position's
cash-flow P&L at the close), how many bars closed holding a position, and the deepest drawdown.

Bars are marked one at a time (:meth:`EquityCurve.mark`), or a run of bars at once over which
the position did not change (:meth:`EquityCurve.extend`): the same values, operation for
operation, computed without a call per bar. A flat position's equity does not move with the
price: it is marked on the first bar after a fill and carried (the same value) until the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from itertools import repeat
from operator import attrgetter

from engine.domain.market import Bar
from engine.domain.positions import Position, pnl_at_marks, total_pnl

_ZERO = Decimal(0)
_CLOSE = attrgetter("close")


class EquityCurve:
    """The equity at each close of a replay, with its exposure and deepest drawdown."""

    __slots__ = (
        "_marked_fills",
        "capital",
        "exposed",
        "max_drawdown",
        "max_drawdown_pct",
        "peak",
        "values",
    )

    def __init__(self, capital: Decimal) -> None:
        self.capital = capital
        #: one equity per bar marked, in bar order
        self.values: list[Decimal] = []
        #: how many of them held a position
        self.exposed = 0
        self.peak = capital
        self.max_drawdown = _ZERO
        #: the deepest drawdown as a percentage of the peak it fell from
        self.max_drawdown_pct = _ZERO
        self._marked_fills = 0

    def mark(self, position: Position, price: Decimal, fills: int) -> None:
        """One bar closing at ``price`` with ``position``, after ``fills`` fills in all."""
        equities = self.values
        if not position.quantity and self._marked_fills == fills and equities:
            # flat and nothing filled since: the equity is the last one, drawdown unchanged
            equities.append(equities[-1])
            return
        self._marked_fills = fills
        equity = self.capital + total_pnl(position, price)
        equities.append(equity)
        if position.quantity:
            self.exposed += 1
        peak = self.peak
        if equity > peak:
            self.peak = equity
            return  # a new peak: no drawdown
        drawdown = peak - equity
        if drawdown > self.max_drawdown:
            self.max_drawdown = drawdown
            self.max_drawdown_pct = drawdown / peak * 100

    def extend(self, position: Position, bars: Sequence[Bar], start: int, end: int) -> None:
        """``bars[start:end]`` closing with ``position``, which did not change over them, the
        first of them the first bar after the fills that made it: what :meth:`mark` gives
        bar by bar, without a call per bar."""
        if start >= end:
            return
        values = self.values
        if not position.quantity:
            equity = self.capital + total_pnl(position, bars[start].close)
            values += repeat(equity, end - start)
            self._track(equity)
            return
        closes = list(map(_CLOSE, bars[start:end]))
        marks = list(map(self.capital.__add__, pnl_at_marks(position, closes)))
        values += marks
        self.exposed += len(marks)
        peak, deepest, pct = self.peak, self.max_drawdown, self.max_drawdown_pct
        for equity in marks:  # mark's drawdown, over the run
            if equity > peak:
                peak = equity
            elif peak - equity > deepest:
                deepest = peak - equity
                pct = deepest / peak * 100
        self.peak, self.max_drawdown, self.max_drawdown_pct = peak, deepest, pct

    def remark(self, position: Position, price: Decimal) -> None:
        """The last bar's close again, with the position after the last bar's own fills."""
        equity = self.capital + total_pnl(position, price)
        self.values[-1] = equity
        self._track(equity)

    def _track(self, equity: Decimal) -> None:
        peak = self.peak
        if equity > peak:
            self.peak = equity
            return
        drawdown = peak - equity
        if drawdown > self.max_drawdown:
            self.max_drawdown = drawdown
            self.max_drawdown_pct = drawdown / peak * 100
