"""What a run's fills and equity curve say: round trips (the trades of the report) and the
performance figures traders compare tools by. Pure functions; money stays ``Decimal``, ratios
that are statistics (Sharpe, volatility) are floats.

Definitions (the report's and ``--json``'s):

- A **round trip** starts when the position leaves zero and ends when it is back at zero (a fill
  that crosses zero closes one and opens the next). Its P&L is exit minus entry value, minus
  every fee valued in the quote asset; its return is P&L over entry value. An unfinished one at
  the end is reported as open, not counted as a trade (as backtesting.py does by default).
- **Return** is end over start equity; **buy & hold** the last close over the first;
  **CAGR** the return compounded per 365.25 days of the data's span.
- Per-bar returns of the equity marked at each close give **volatility** (annualised by the
  data's own bars per year), **Sharpe** (mean over standard deviation, risk-free rate 0) and
  **Sortino** (mean over downside deviation); **Calmar** is CAGR over the maximum drawdown.
- **Exposure** is the share of bars that closed holding a position.
- **Drawdown durations** run from a peak to the bar the equity is back at it (or the end).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from engine.domain.records import builder
from engine.domain.types import Asset
from engine.venues.base import FillReport

_ZERO = Decimal(0)
_YEAR = timedelta(days=365.25)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundTrip:
    #: +1 long, -1 short
    direction: int
    quantity: Decimal
    entry_time: datetime
    exit_time: datetime | None
    entry_price: Decimal
    exit_price: Decimal | None
    fees: Decimal
    pnl: Decimal
    return_pct: Decimal

    @property
    def duration(self) -> timedelta | None:
        return None if self.exit_time is None else self.exit_time - self.entry_time


_ROUND_TRIP = builder(RoundTrip)


@dataclass(slots=True)
class _Open:
    direction: int
    entry_time: datetime
    qty: Decimal = _ZERO
    entry_value: Decimal = _ZERO
    exit_qty: Decimal = _ZERO
    exit_value: Decimal = _ZERO
    fees: Decimal = _ZERO

    def trip(self, exit_time: datetime | None, mark: Decimal | None = None) -> RoundTrip:
        entry_price = self.entry_value / self.qty
        if exit_time is None:  # open: valued at the mark
            assert mark is not None
            exit_value = self.exit_value + (self.qty - self.exit_qty) * mark
            exit_price = None
        else:
            exit_value = self.exit_value
            exit_price = self.exit_value / self.exit_qty if self.exit_qty else None
        pnl = self.direction * (exit_value - self.entry_value) - self.fees
        return _ROUND_TRIP(  # RoundTrip's fields in order (a backtest has thousands)
            self.direction,
            self.qty,  # quantity
            self.entry_time,
            exit_time,
            entry_price,
            exit_price,
            self.fees,
            pnl,
            pnl / self.entry_value * 100,  # return_pct
        )


def round_trips(
    fills: Sequence[FillReport], quote_asset: Asset, mark: Decimal, dust: Decimal = _ZERO
) -> tuple[list[RoundTrip], RoundTrip | None]:
    """The closed round trips in order, and the one still open at the end (valued at
    ``mark``), from fills of one symbol. A fee paid in the base asset shrinks the position;
    what is left below ``dust`` (the lot step: it cannot be sold) counts as flat."""
    closed: list[RoundTrip] = []
    current: _Open | None = None
    position = _ZERO
    for f in fills:
        in_quote = f.fee_asset == quote_asset
        fee = f.fee if in_quote else f.fee * f.price
        left = f.quantity
        sign = f.side.sign  # (a property: read once per fill)
        while left > 0:
            if current is None:
                current = _Open(direction=sign, entry_time=f.venue_ts)
            if sign == current.direction:  # adds to the trip
                current.qty += left
                current.entry_value += left * f.price
                current.fees += fee * left / f.quantity
                position += sign * left
                left = _ZERO
            else:  # reduces it; what is beyond zero opens the next
                take = min(left, abs(position))
                current.exit_qty += take
                current.exit_value += take * f.price
                current.fees += fee * take / f.quantity
                position += sign * take
                left -= take
            if not in_quote and left == 0:
                position -= f.fee
            if abs(position) <= dust or (current.exit_qty and position * current.direction <= 0):
                closed.append(current.trip(f.venue_ts))
                current = None
                if left > 0 and abs(position) <= dust:
                    position = _ZERO
    return closed, (current.trip(None, mark) if current is not None else None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Performance:
    return_pct: float
    buy_hold_pct: float
    cagr_pct: float | None
    volatility_pct: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    exposure_pct: float
    trades: int
    win_rate_pct: float | None
    best_trade_pct: float | None
    worst_trade_pct: float | None
    avg_trade_pct: float | None
    profit_factor: float | None
    #: average P&L per round trip, in the quote asset
    expectancy: Decimal | None
    max_drawdown_pct: float
    max_drawdown_duration: timedelta
    avg_drawdown_duration: timedelta | None
    max_trade_duration: timedelta | None
    avg_trade_duration: timedelta | None


def performance(
    *,
    times: Sequence[datetime],
    equity: Sequence[Decimal],
    exposed_bars: int,
    first_close: Decimal,
    last_close: Decimal,
    trips: Sequence[RoundTrip],
) -> Performance:
    """The figures of :mod:`this module <engine.backtest.metrics>` from the equity marked at
    each bar's close (``times`` are the closes), the bars that closed holding a position, and
    the closed round trips."""
    # One value per bar: mapped with builtins rather than per-element Python code (a backtest
    # of 250,000 bars spent a tenth of its time here), the same float operations in the same
    # order, so the same figures to the last bit.
    values = list(map(float, equity))
    start, end = values[0], values[-1]
    span = times[-1] - times[0]
    years = span / _YEAR
    growth = end / start
    cagr = (growth ** (1 / years) - 1) * 100 if years > 0 and growth > 0 else None
    if 0.0 in values:  # never for a real equity curve: the readable form, skipping zeros
        returns = [b / a - 1 for a, b in itertools.pairwise(values) if a != 0]
    else:
        returns = list(
            map(operator.sub, map(operator.truediv, values[1:], values[:-1]), itertools.repeat(1))
        )
    per_year = (len(returns) / years) if years > 0 else None
    vol = sharpe = sortino = None
    if len(returns) > 1 and per_year is not None:
        mean = math.fsum(filter(None, returns)) / len(returns)  # (zeros add nothing)
        var = math.fsum(
            map(pow, map(operator.sub, returns, itertools.repeat(mean)), itertools.repeat(2))
        ) / (len(returns) - 1)
        # the squares of min(r, 0): of the losses only (zeros add nothing to the exact sum,
        # and half the bars of a long/flat strategy return exactly 0)
        down = math.fsum(map(pow, filter((0.0).__gt__, returns), itertools.repeat(2))) / len(
            returns
        )
        scale = math.sqrt(per_year)
        vol = math.sqrt(var) * scale * 100
        sharpe = mean / math.sqrt(var) * scale if var > 0 else None
        sortino = mean / math.sqrt(down) * scale if down > 0 else None
    max_dd, max_dd_dur, durations = _drawdowns(times, values)
    calmar = cagr / max_dd if cagr is not None and max_dd > 0 else None
    pnls = [t.pnl for t in trips]
    rets = [float(t.return_pct) for t in trips]
    wins = sum((p for p in pnls if p > 0), _ZERO)
    losses = -sum((p for p in pnls if p < 0), _ZERO)
    trip_durations = [d for t in trips if (d := t.duration) is not None]
    return Performance(
        return_pct=(growth - 1) * 100,
        buy_hold_pct=float(last_close / first_close - 1) * 100,
        cagr_pct=cagr,
        volatility_pct=vol,
        sharpe=sharpe,
        sortino=sortino,
        calmar=calmar,
        exposure_pct=exposed_bars / len(values) * 100,
        trades=len(trips),
        win_rate_pct=(sum(1 for p in pnls if p > 0) / len(pnls) * 100) if pnls else None,
        best_trade_pct=max(rets) if rets else None,
        worst_trade_pct=min(rets) if rets else None,
        avg_trade_pct=(math.fsum(rets) / len(rets)) if rets else None,
        profit_factor=float(wins / losses) if losses > 0 else None,
        expectancy=(sum(pnls, _ZERO) / len(pnls)) if pnls else None,
        max_drawdown_pct=max_dd,
        max_drawdown_duration=max_dd_dur,
        avg_drawdown_duration=(sum(durations, timedelta(0)) / len(durations))
        if durations
        else None,
        max_trade_duration=max(trip_durations) if trip_durations else None,
        avg_trade_duration=(sum(trip_durations, timedelta(0)) / len(trip_durations))
        if trip_durations
        else None,
    )


def drawdown_series(values: Sequence[float]) -> list[float]:
    """Each point's drawdown from the running peak, in percent (0 or negative)."""
    peak = -math.inf
    out = []
    for v in values:
        peak = max(peak, v)
        out.append((v / peak - 1) * 100 if peak > 0 else 0.0)
    return out


def _drawdowns(
    times: Sequence[datetime], values: Sequence[float]
) -> tuple[float, timedelta, list[timedelta]]:
    """The deepest drawdown (percent, positive), the longest one's duration, and every
    drawdown's duration (peak to recovery, or to the end)."""
    peak = low = values[0]
    peak_at = times[0]
    deepest = 0.0
    durations: list[timedelta] = []
    under = False
    for t, v in zip(times, values, strict=True):
        if v >= peak:
            if under:
                durations.append(t - peak_at)
                under = False
            peak, peak_at, low = v, t, v
        else:
            under = True
            # The depth only grows as the equity falls below its lowest since the peak (division
            # and subtraction round monotonically; below a negative peak it is negative, never
            # the deepest): computed then only
            if v < low:
                low = v
                depth = (1 - v / peak) * 100
                if depth > deepest:  # max(), without a call per bar under water
                    deepest = depth
    if under:
        durations.append(times[-1] - peak_at)
    return deepest, max(durations, default=timedelta(0)), durations
