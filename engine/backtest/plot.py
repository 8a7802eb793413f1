"""``--plot FILE.html``: the equity curve and its drawdown as one self-contained HTML file (inline
SVG, no script, no network), so it opens anywhere, offline included."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from engine.backtest.errors import BacktestError
from engine.backtest.metrics import drawdown_series
from engine.backtest.report import BacktestReport

_WIDTH = 960
_EQUITY_H = 320
_DD_H = 140
_PAD_L = 80
_PAD_R = 20
_PAD = 24
#: points per series drawn; longer curves keep each bucket's low and high, so no drawdown hides
_MAX_POINTS = 2000


def _thin(times: Sequence[datetime], values: Sequence[float]) -> list[tuple[datetime, float]]:
    if len(values) <= _MAX_POINTS:
        return list(zip(times, values, strict=True))
    per = len(values) / (_MAX_POINTS / 2)
    out: list[tuple[datetime, float]] = []
    start = 0
    while start < len(values):
        end = min(len(values), int(start + per) or start + 1)
        chunk = range(start, max(end, start + 1))
        lo = min(chunk, key=lambda i: values[i])
        hi = max(chunk, key=lambda i: values[i])
        out.extend((times[i], values[i]) for i in sorted({lo, hi}))
        start = chunk.stop
    return out


def _path(
    points: Sequence[tuple[datetime, float]],
    t0: datetime,
    span: float,
    lo: float,
    hi: float,
    top: float,
    height: float,
) -> str:
    width = _WIDTH - _PAD_L - _PAD_R
    rng = (hi - lo) or 1.0

    def xy(t: datetime, v: float) -> str:
        x = _PAD_L + (t - t0).total_seconds() / span * width
        y = top + (hi - v) / rng * height
        return f"{x:.1f},{y:.1f}"

    return " ".join(xy(t, v) for t, v in points)


def _axis(top: float, height: float, lo: float, hi: float, fmt: str) -> str:
    labels = []
    for frac in (0.0, 0.5, 1.0):
        v = hi - frac * (hi - lo)
        y = top + frac * height
        labels.append(
            f'<line x1="{_PAD_L}" x2="{_WIDTH - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}" '
            f'class="grid"/><text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{format(v, fmt)}</text>"
        )
    return "".join(labels)


def render_plot(reports: Sequence[BacktestReport]) -> str:
    """The HTML document: one chart per run."""
    charts = "\n".join(_chart(r) for r in reports)
    title = html.escape(_title(reports[0]) if len(reports) == 1 else f"{len(reports)} backtests")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 24px; color: #222; }}
svg text {{ font-size: 11px; fill: #555; }}
.grid {{ stroke: #e5e5e5; }}
.equity {{ fill: none; stroke: #1f6feb; stroke-width: 1.2; }}
.dd {{ fill: #f85149; fill-opacity: 0.35; stroke: #cf222e; stroke-width: 0.8; }}
.win {{ fill: #1a7f37; }} .loss {{ fill: #cf222e; }}
</style></head><body>
{charts}
<p>Trade entries are marked along the bottom (green won, red lost).</p>
</body></html>
"""


def _title(report: BacktestReport) -> str:
    params = " ".join(f"{k}={v}" for k, v in sorted(report.params.items())) or "defaults"
    return f"{report.strategy} on {report.symbol} ({params})"


def _chart(report: BacktestReport) -> str:
    times = report.equity_times
    equity = [float(e) for e in report.equity]
    drawdown = drawdown_series(equity)
    t0 = times[0]
    span = (times[-1] - t0).total_seconds() or 1.0
    eq_points = _thin(times, equity)
    dd_points = _thin(times, drawdown)
    eq_lo, eq_hi = min(equity), max(equity)
    dd_lo = min(drawdown) or -1.0
    eq_top = _PAD
    dd_top = eq_top + _EQUITY_H + 2 * _PAD
    height = dd_top + _DD_H + 2 * _PAD
    eq_line = _path(eq_points, t0, span, eq_lo, eq_hi, eq_top, _EQUITY_H)
    dd_line = _path(dd_points, t0, span, dd_lo, 0.0, dd_top, _DD_H)
    baseline = f"{_WIDTH - _PAD_R},{dd_top:.1f} {_PAD_L},{dd_top:.1f}"
    p = report.performance
    summary = html.escape(
        f"return {p.return_pct:.2f}% (buy & hold {p.buy_hold_pct:.2f}%), "
        f"max drawdown {p.max_drawdown_pct:.2f}%, {p.trades} trades, "
        f"{report.bars} bars {report.start.date()} .. {report.end.date()}"
    )
    scale = (_WIDTH - _PAD_L - _PAD_R) / span
    markers = "".join(
        f'<circle cx="{_PAD_L + (t.entry_time - t0).total_seconds() * scale:.1f}" '
        f'cy="{dd_top + _DD_H + 10:.1f}" r="2" class="{"win" if t.pnl > 0 else "loss"}">'
        f"<title>{html.escape(f'{t.entry_time.isoformat()} P&L {t.pnl:.2f}')}</title></circle>"
        for t in report.trades
    )
    return f"""<h2>{html.escape(_title(report))}</h2>
<p>{summary}</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height:.0f}"
     viewBox="0 0 {_WIDTH} {height:.0f}" role="img" aria-label="equity and drawdown">
<text x="{_PAD_L}" y="{eq_top - 8}">equity</text>
{_axis(eq_top, _EQUITY_H, eq_lo, eq_hi, ",.2f")}
<polyline class="equity" points="{eq_line}"/>
<text x="{_PAD_L}" y="{dd_top - 8}">drawdown %</text>
{_axis(dd_top, _DD_H, dd_lo, 0.0, ".2f")}
<polygon class="dd" points="{dd_line} {baseline}"/>
<text x="{_PAD_L}" y="{height - 2}">{times[0].date()}</text>
<text x="{_WIDTH - _PAD_R}" y="{height - 2}" text-anchor="end">{times[-1].date()}</text>
{markers}
</svg>
"""


def write_plot(reports: Sequence[BacktestReport], path: Path) -> None:
    try:
        path.write_text(render_plot(reports), encoding="utf-8")
    except OSError as exc:
        raise BacktestError(f"--plot {path}: cannot write: {exc.strerror}") from None
