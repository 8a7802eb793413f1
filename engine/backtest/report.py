"""The outcome of one backtest run, as exact values (rendering is :mod:`engine.backtest.render`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from engine.domain.types import AccountId, Symbol
from engine.venues.base import FillReport


@dataclass(frozen=True, slots=True, kw_only=True)
class BacktestReport:
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
    trades: tuple[FillReport, ...]
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
