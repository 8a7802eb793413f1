"""A backtest report for machines: one JSON document (``--json``) and the round trips as CSV
(``--trades FILE.csv``). Money is written as decimal strings, exact; ratios as numbers."""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.backtest.errors import BacktestError
from engine.backtest.metrics import RoundTrip
from engine.backtest.render import plain
from engine.backtest.report import BacktestReport

TRADE_COLUMNS = (
    "n",
    "direction",
    "quantity",
    "entry_time",
    "entry_price",
    "exit_time",
    "exit_price",
    "fees",
    "pnl",
    "return_pct",
    "duration_s",
)


def _value(value: object) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, float):
        return round(value, 6)
    return value


def trade_row(n: int, trip: RoundTrip) -> dict[str, Any]:
    duration = trip.duration
    return {
        "n": n,
        "direction": "long" if trip.direction > 0 else "short",
        "quantity": _value(trip.quantity),
        "entry_time": trip.entry_time.isoformat(),
        "entry_price": _value(trip.entry_price),
        "exit_time": None if trip.exit_time is None else trip.exit_time.isoformat(),
        "exit_price": None if trip.exit_price is None else _value(trip.exit_price),
        "fees": _value(trip.fees),
        "pnl": _value(trip.pnl),
        "return_pct": round(float(trip.return_pct), 6),
        "duration_s": None if duration is None else duration.total_seconds(),
    }


def report_json(report: BacktestReport, *, equity_curve: bool = True) -> dict[str, Any]:
    """Everything the text report shows, the round trips, and (unless turned off) the equity
    curve as ``[close time, equity]`` pairs."""
    perf = {f.name: _value(getattr(report.performance, f.name)) for f in dataclasses.fields(
        report.performance
    )}  # fmt: skip
    out: dict[str, Any] = {
        "strategy": report.strategy,
        "params": dict(report.params),
        "symbol": report.symbol,
        "seed": report.seed,
        "data": report.data,
        "bars": report.bars,
        "interval": report.interval,
        "gaps": report.gaps,
        "largest_gap_s": report.largest_gap.total_seconds(),
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "model": dict(report.model),
        "decisions": report.decisions,
        "holds": report.holds,
        "orders": report.orders,
        "rejected": report.rejected,
        "partially_filled": report.partially_filled,
        "unsent": report.unsent,
        "fills": len(report.fills),
        "fill_rate": _value(report.fill_rate),
        "fees": _value(report.fees),
        "realized_pnl": _value(report.realized_pnl),
        "unrealized_pnl": _value(report.unrealized_pnl),
        "pnl": _value(report.pnl),
        "final_position": _value(report.final_position),
        "last_price": _value(report.last_price),
        "avg_slippage_bps": _value(report.avg_slippage_bps),
        "start_equity": _value(report.start_equity),
        "end_equity": _value(report.end_equity),
        "max_drawdown": _value(report.max_drawdown),
        "performance": perf,
        "trades": [trade_row(n, t) for n, t in enumerate(report.trades, 1)],
        "open_trade": None
        if report.open_trade is None
        else trade_row(len(report.trades) + 1, report.open_trade),
        "rejections": list(report.rejections),
        "account": report.account,
    }
    if equity_curve:
        out["equity_curve"] = [
            [t.isoformat(), _value(e)]
            for t, e in zip(report.equity_times, report.equity, strict=True)
        ]
    return out


def write_trades_csv(reports: Sequence[BacktestReport], path: Path) -> int:
    """The closed round trips (and the open one, with no exit) of every run as CSV, with the
    run's strategy and symbol; returns the rows."""
    rows: list[dict[str, Any]] = []
    for report in reports:
        trips = [*report.trades, *([report.open_trade] if report.open_trade else [])]
        run = {"strategy": report.strategy, "symbol": report.symbol}
        rows.extend({**run, **trade_row(n, t)} for n, t in enumerate(trips, 1))
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=("strategy", "symbol", *TRADE_COLUMNS))
            writer.writeheader()
            writer.writerows(rows)
    except OSError as exc:
        raise BacktestError(f"--trades {path}: cannot write: {exc.strerror}") from None
    return len(rows)
