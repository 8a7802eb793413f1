"""A backtest report as text for people, and the SQL that shows a persisted run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from engine.backtest.report import BacktestReport
from engine.domain import formatting


def plain(value: Decimal) -> str:
    """A quantity for people: no exponent, no trailing zeros (``0E-8`` → ``0``, ``2.50`` →
    ``2.5``). Display only; the report keeps the exact values."""
    return formatting.plain(value)


def render_report(report: BacktestReport) -> str:
    def money(value: Decimal) -> str:
        return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):,}"

    params = " ".join(f"{k}={v}" for k, v in sorted(report.params.items())) or "(defaults)"
    fill_rate = "n/a" if report.fill_rate is None else f"{report.fill_rate * 100:.2f}%"
    slip = "n/a" if report.avg_slippage_bps is None else f"{report.avg_slippage_bps:.2f} bps"
    lines = [
        f"Backtest  {report.strategy} on {report.symbol}  seed {report.seed}",
        f"  data            {report.data}",
        f"  params          {params}",
        f"  period          {report.start.isoformat()} .. {report.end.isoformat()}"
        f"  ({report.bars} bars of {report.interval}, {report.gaps} gaps, largest "
        f"{_duration(report.largest_gap)})",
        "  fill model      " + " ".join(f"{k}={v}" for k, v in report.model.items()),
        f"  decisions       {report.decisions} ({report.holds} holds)",
        f"  orders          {report.orders} accepted, {report.rejected} rejected, "
        f"{report.partially_filled} partially filled",
        f"  fills           {len(report.fills)}",
        f"  fill rate       {fill_rate}  "
        f"({plain(report.filled_qty)} of {plain(report.requested_qty)})",
        f"  avg slippage    {slip}",
        f"  fees            {money(report.fees)}",
        f"  realized P&L    {money(report.realized_pnl)}",
        f"  unrealized P&L  {money(report.unrealized_pnl)}"
        f"  (position {plain(report.final_position)} @ {plain(report.last_price)})",
        f"  total P&L       {money(report.pnl)}",
        f"  equity          {money(report.start_equity)} -> {money(report.end_equity)}",
        f"  max drawdown    {money(report.max_drawdown)} ({report.max_drawdown_pct:.2f}%)",
    ]
    lines.extend(_performance_lines(report))
    lines.extend(f"  rejected: {reason}" for reason in report.rejections)
    if report.account is not None:
        lines.append(f"  ledger account  {report.account}")
    return "\n".join(lines)


def ledger_hint(account: str) -> str:
    """One SQL statement that shows a persisted run's decisions, orders and fills."""
    quoted = account.replace("'", "''")
    return (
        "SELECT decided_at, intent, side, quantity, outcome, state, fills, reason "
        f"FROM decision_trace WHERE account = '{quoted}' ORDER BY decided_at;"
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}%"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "n/a"
    days = value / timedelta(days=1)
    return f"{days:.1f}d" if days >= 1 else f"{value / timedelta(hours=1):.1f}h"


def _performance_lines(report: BacktestReport) -> list[str]:
    p = report.performance
    expectancy = "n/a" if p.expectancy is None else _money(p.expectancy)
    open_trade = (
        "none"
        if report.open_trade is None
        else f"{plain(report.open_trade.quantity)} since {report.open_trade.entry_time.isoformat()}"
        f" ({_money(report.open_trade.pnl)})"
    )
    unsent = f"  ({report.unsent} orders of the last bar never sent)" if report.unsent else ""
    return [
        "Performance",
        f"  return          {_pct(p.return_pct)}  (buy & hold {_pct(p.buy_hold_pct)})",
        f"  CAGR            {_pct(p.cagr_pct)}",
        f"  volatility      {_pct(p.volatility_pct)} annualised",
        f"  Sharpe          {_ratio(p.sharpe)}  Sortino {_ratio(p.sortino)}  "
        f"Calmar {_ratio(p.calmar)}",
        f"  exposure        {_pct(p.exposure_pct)} of bars",
        f"  max drawdown    {_pct(p.max_drawdown_pct)}  lasting "
        f"{_duration(p.max_drawdown_duration)} (avg {_duration(p.avg_drawdown_duration)})",
        f"  trades          {p.trades} round trips{unsent}",
        f"  win rate        {_pct(p.win_rate_pct)}",
        f"  trade return    best {_pct(p.best_trade_pct)}  worst {_pct(p.worst_trade_pct)}  "
        f"avg {_pct(p.avg_trade_pct)}",
        f"  profit factor   {_ratio(p.profit_factor)}",
        f"  expectancy      {expectancy} per trade",
        f"  trade duration  max {_duration(p.max_trade_duration)}  "
        f"avg {_duration(p.avg_trade_duration)}",
        f"  open trade      {open_trade}",
    ]


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_EVEN):,}"


def render_totals(reports: Sequence[BacktestReport]) -> str:
    """Several replays side by side, and their sum (each started with its own capital)."""
    lines = [
        "Runs",
        f"  {'strategy':<16} {'symbol':<12} {'trades':>6} {'return':>9} {'P&L':>16} {'max DD':>8}",
    ]
    for r in reports:
        p = r.performance
        lines.append(
            f"  {r.strategy:<16} {r.symbol:<12} {p.trades:>6} {p.return_pct:>8.2f}% "
            f"{_money(r.pnl):>16} {p.max_drawdown_pct:>7.2f}%"
        )
    capital = sum((r.start_equity for r in reports), Decimal(0))
    pnl = sum((r.pnl for r in reports), Decimal(0))
    lines.append(
        f"  total: {sum(r.performance.trades for r in reports)} trades, P&L {_money(pnl)} on "
        f"{_money(capital)} capital ({pnl / capital * 100:.2f}%)"
    )
    return "\n".join(lines)
