"""The outcome of one backtest run, as exact values (rendering is :mod:`engine.backtest.render`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from engine.backtest.metrics import Performance, RoundTrip
from engine.domain.types import AccountId, Symbol
from engine.venues.base import FillReport


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestReport:
    """The per-bar and per-fill series are left out of the repr: Python 3.11's ``asyncio.run``
    formats its result twice on the way out (restoring the SIGINT handler), which for 250,000
    bars cost seconds."""

    strategy: str
    params: Mapping[str, str]
    symbol: Symbol
    seed: int
    data: str
    bars: int
    start: datetime
    end: datetime
    decisions: int
    holds: int
    orders: int
    rejected: int
    #: orders that filled only in part (the rest expired, was canceled, or still rests)
    partially_filled: int
    fills: tuple[FillReport, ...] = field(repr=False)
    #: closed round trips: the report's trades
    trades: tuple[RoundTrip, ...] = field(repr=False)
    #: the round trip still open at the end (valued at the last close), if any
    open_trade: RoundTrip | None
    performance: Performance
    #: the equity marked at each bar's close, and those closes
    equity_times: tuple[datetime, ...] = field(repr=False)
    equity: tuple[Decimal, ...] = field(repr=False)
    #: the fill model and the instrument as run (``fill=close spread_bps=0 ...``)
    model: Mapping[str, str]
    #: the bar interval (median step) and the gaps in the data
    interval: str
    gaps: int
    largest_gap: timedelta
    #: orders decided on the last bar that a next-open fill model never sends
    unsent: int
    requested_qty: Decimal
    filled_qty: Decimal
    #: filled / requested quantity over every accepted order
    fill_rate: Decimal | None
    #: every fee valued in the quote asset (base-asset fees at their fill price)
    fees: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    #: realized + unrealized at the last close: equals the cash-flow P&L of the fills
    pnl: Decimal
    final_position: Decimal
    last_price: Decimal
    #: quantity-weighted, against the decision's mid; positive = cost
    avg_slippage_bps: Decimal | None
    start_equity: Decimal
    end_equity: Decimal
    max_drawdown: Decimal
    max_drawdown_pct: Decimal
    rejections: tuple[str, ...] = ()
    #: the ledger account the run was recorded under, when it was persisted
    account: AccountId | None = None
