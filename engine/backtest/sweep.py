"""``--sweep fast=5:20:5 slow=20:60:10``: the same backtest over a grid of params, each point in
its own process (a replay is CPU-bound Python), ranked by one figure of the report.

A spec is ``name=start:stop:step`` (both ends included) or ``name=a,b,c``. Points the strategy
refuses (``slow`` not above ``fast``) are skipped and counted, not errors: a grid often has some.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from engine.backtest.errors import BacktestError
from engine.backtest.settings import BacktestSettings

#: the figures a sweep can rank by (higher is better, except drawdown)
RANK_BY = (
    "return_pct",
    "sharpe",
    "sortino",
    "calmar",
    "profit_factor",
    "win_rate_pct",
    "max_drawdown_pct",
)
_MAX_POINTS = 10_000


def parse_sweep(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["fast=5:20:5", "slow=20,40"]`` → ``{"fast": ["5", "10", "15", "20"], ...}``."""
    grid: dict[str, list[str]] = {}
    for spec in (part for item in specs for part in item.split()):
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not name or not text:
            raise BacktestError(f"--sweep takes name=start:stop:step or name=a,b,c, got {spec!r}")
        if name in grid:
            raise BacktestError(f"--sweep names {name!r} twice")
        grid[name] = _values(name, text.strip())
    points = 1
    for values in grid.values():
        points *= len(values)
    if points > _MAX_POINTS:
        raise BacktestError(f"--sweep grid has {points} points; at most {_MAX_POINTS}")
    return grid


def _values(name: str, text: str) -> list[str]:
    if ":" not in text:
        return [v.strip() for v in text.split(",") if v.strip()]
    parts = text.split(":")
    try:
        start, stop, step = (Decimal(p) for p in parts) if len(parts) == 3 else (None,) * 3
    except InvalidOperation:
        start = None
    if start is None or stop is None or step is None or step <= 0 or stop < start:
        raise BacktestError(
            f"--sweep {name}={text}: expected start:stop:step with step > 0 and stop >= start"
        )
    out: list[str] = []
    value = start
    while value <= stop and len(out) <= _MAX_POINTS:
        out.append(str(value))
        value += step
    return out


def grid_points(base: Mapping[str, str], grid: Mapping[str, list[str]]) -> Iterator[dict[str, str]]:
    names = list(grid)
    for combo in itertools.product(*(grid[n] for n in names)):
        yield {**base, **dict(zip(names, combo, strict=True))}


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepRow:
    params: dict[str, str]
    return_pct: float
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    profit_factor: float | None
    win_rate_pct: float | None
    max_drawdown_pct: float
    trades: int
    pnl: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepResult:
    rows: list[SweepRow]
    #: the points the strategy refused, with why (the first few)
    skipped: int
    skipped_samples: list[str]


def _one(
    data: Path, strategy: str, params: dict[str, str], seed: int, settings: BacktestSettings
) -> SweepRow | str:
    """One grid point, in a worker process; a refused point comes back as its reason."""
    from engine.backtest.run import run_backtest

    try:
        report = run_backtest(data, strategy, params, seed, settings=settings)
    except BacktestError as exc:
        return str(exc)
    p = report.performance
    return SweepRow(
        params=params,
        return_pct=p.return_pct,
        sharpe=p.sharpe,
        sortino=p.sortino,
        calmar=p.calmar,
        profit_factor=p.profit_factor,
        win_rate_pct=p.win_rate_pct,
        max_drawdown_pct=p.max_drawdown_pct,
        trades=p.trades,
        pnl=report.pnl,
    )


def run_sweep(
    data: Path,
    strategy: str,
    base: Mapping[str, str],
    grid: Mapping[str, list[str]],
    seed: int,
    *,
    settings: BacktestSettings,
    rank_by: str = "return_pct",
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Every grid point, ``jobs`` processes at a time (default: the CPUs), ranked best first.
    ``progress(done, total)`` is called as points finish."""
    if rank_by not in RANK_BY:
        raise BacktestError(f"--rank-by {rank_by!r}: one of {', '.join(RANK_BY)}")
    points = list(grid_points(base, grid))
    rows: list[SweepRow] = []
    refused: list[str] = []
    workers = max(1, min(jobs or os.cpu_count() or 1, len(points)))
    if workers == 1:
        for n, params in enumerate(points, 1):
            _collect(_one(data, strategy, params, seed, settings), params, rows, refused)
            if progress is not None:
                progress(n, len(points))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures: dict[Future[SweepRow | str], dict[str, str]] = {
                pool.submit(_one, data, strategy, params, seed, settings): params
                for params in points
            }
            for n, future in enumerate(as_completed(futures), 1):
                _collect(future.result(), futures[future], rows, refused)
                if progress is not None:
                    progress(n, len(points))
    if not rows and refused:
        raise BacktestError(f"--sweep: every point was refused, e.g. {refused[0]}")
    lower_is_better = rank_by == "max_drawdown_pct"

    def key(row: SweepRow) -> float:
        value = getattr(row, rank_by)
        if value is None:
            return float("inf") if lower_is_better else float("-inf")
        return float(value)

    rows.sort(key=key, reverse=not lower_is_better)
    return SweepResult(rows=rows, skipped=len(refused), skipped_samples=refused[:3])


def _collect(
    outcome: SweepRow | str, params: dict[str, str], rows: list[SweepRow], refused: list[str]
) -> None:
    if isinstance(outcome, str):
        point = " ".join(f"{k}={v}" for k, v in params.items())
        refused.append(f"{point}: {outcome}")
    else:
        rows.append(outcome)
