"""Replay throughput: bars per second through a strategy, the live host and the paper venue,
side by side with backtesting.py on the same bars.

A seeded OHLCV file of ``--bars`` hourly bars (default 250,000) is written to a temporary
directory, then replayed with ``sma_cross`` (SMA 10/30, one unit, long/flat) under the ideal fill
model (fill at the signal bar's close, no fees, spread, latency or participation cap) by
:func:`engine.backtest.run_backtest` (CSV parsing included) and by :class:`engine.backtest.Replay`
alone (parsing excluded), and over the first quarter of the bars too: the cost per bar must not
grow with the fills. When backtesting.py is installed (``pip install .[compare]``) the same
bars run through its ``trade_on_close=True`` with the same strategy, and both P&Ls are printed
(they agree). With ``--database-url`` (a Postgres at the migrations' head) the same bars are also
replayed with ``--persist``'s durable path, into a fresh ``backtest-…`` account, and timed.
Times are this process's CPU seconds (``time.process_time``), each timed after a full
collection (no side pays for the garbage of the runs before it). A virtual machine's CPU time
still varies by ±15 % from run to run (steal, cache neighbours), so the replay and
backtesting.py run ``--repeat`` times each (3), alternating, and each side's fastest run is
compared (timeit's rule: the least disturbed run), with every round's own ratio printed too
(``vs_bt_py_per_round``). The persisted run, which waits on Postgres, is timed by the wall
clock. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import math
import random
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.backtest import (
    BacktestSettings,
    Replay,
    load_bars,
    run_backtest,
    run_backtest_persisted,
)
from engine.domain.types import Symbol
from engine.ledger.db import make_engine, normalize_url
from engine.observability import configure_logging

PARAMS = {"fast": "10", "slow": "30", "qty": "1"}
#: fill at the signal bar's close with no costs: what backtesting.py's trade_on_close does
IDEAL = BacktestSettings(
    capital=Decimal(10_000_000),
    spread_bps=Decimal(0),
    latency_ms=Decimal(0),
    maker_fee=Decimal(0),
    taker_fee=Decimal(0),
)


def write_bars(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    price = 30_000.0
    t = datetime(2020, 1, 1, tzinfo=UTC)
    lines = ["Date,Open,High,Low,Close,Volume"]
    for _ in range(n):
        close = price * math.exp(rng.gauss(0, 0.006))
        high = max(price, close) * (1 + abs(rng.gauss(0, 0.002)))
        low = min(price, close) * (1 - abs(rng.gauss(0, 0.002)))
        volume = 1500 * math.exp(rng.gauss(0, 0.4))
        lines.append(f"{t.isoformat()},{price:.2f},{high:.2f},{low:.2f},{close:.2f},{volume:.5f}")
        price = float(f"{close:.2f}")
        t += timedelta(hours=1)
    path.write_text("\n".join(lines) + "\n")


def timed_replay(data: Path, bars: int | None, seed: int) -> tuple[float, Any]:
    series = load_bars(data, Symbol("BTCUSDT"))
    if bars is not None:
        series = dataclasses.replace(series, bars=series.bars[:bars])
    replay = Replay(series, "sma_cross", PARAMS, seed, settings=IDEAL)
    gc.collect()  # no garbage of the runs before this one left to collect while timed
    start = time.process_time()
    report = asyncio.run(replay.run())
    return time.process_time() - start, report


def backtesting_py(data: Path) -> Callable[[], tuple[float, dict[str, object]]] | None:
    """The same bars and strategy through backtesting.py: a function that runs it once, timed
    (run + stats, CSV excluded); ``None`` when it is not installed."""
    try:
        import pandas as pd
        from backtesting import Backtest, Strategy
        from backtesting.lib import crossover
    except ImportError:
        return None

    def sma(values: Any, n: int) -> Any:
        return pd.Series(values).rolling(n).mean()

    class LongFlat(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, int(PARAMS["fast"]))
            self.slow = self.I(sma, self.data.Close, int(PARAMS["slow"]))

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy(size=int(PARAMS["qty"]))
            elif crossover(self.slow, self.fast):
                self.position.close()

    frame = pd.read_csv(data, index_col=0, parse_dates=True)

    def run_once() -> tuple[float, dict[str, object]]:
        gc.collect()  # as before our timed runs: neither side collects the other's garbage
        start = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = Backtest(
                frame, LongFlat, cash=float(IDEAL.capital), commission=0, trade_on_close=True
            ).run()
        elapsed = time.process_time() - start
        return elapsed, {
            "bt_py_trades": int(stats["# Trades"]),
            "bt_py_pnl": round(float(stats["Equity Final [$]"]) - float(IDEAL.capital), 2),
        }

    return run_once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=250_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="also time the persisted replay into this ledger")
    parser.add_argument("--no-compare", action="store_true", help="skip backtesting.py")
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed runs of each side, alternating; each side's fastest is compared",
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    persisted: dict[str, object] = {}
    theirs: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="tradectl-bench-") as tmp:
        data = Path(tmp) / "bars.csv"
        write_bars(data, args.bars, args.seed)

        start = time.process_time()
        run_backtest(data, "sma_cross", dict(PARAMS), args.seed, settings=IDEAL)
        end_to_end = time.process_time() - start

        quarter = args.bars // 4
        quarter_time, quarter_report = timed_replay(data, quarter, args.seed)
        run_theirs = None if args.no_compare else backtesting_py(data)
        if run_theirs is None and not args.no_compare:
            theirs = {"backtesting_py": "not installed (pip install .[compare])"}
        # Alternating, so a stretch of a busy machine lands on both sides; each side's fastest
        # run is the one least disturbed by other work (timeit's rule), the same for both.
        our_times: list[float] = []
        their_times: list[float] = []
        for _ in range(args.repeat):
            elapsed, report = timed_replay(data, None, args.seed)
            our_times.append(elapsed)
            if run_theirs is not None:
                elapsed, stats = run_theirs()
                their_times.append(elapsed)
                theirs.update(stats)
        if args.database_url:
            persisted = asyncio.run(persist(data, args.bars, args.seed, args.database_url))

    replay_only = min(our_times)
    ours = round(args.bars / replay_only)
    ratio: dict[str, object] = {}
    if their_times:
        theirs["bt_py_bars_per_s"] = round(args.bars / min(their_times))
        ratio = {
            "vs_bt_py": round(min(their_times) / replay_only, 3),
            # each round's own ratio: the spread a single run would have shown
            "vs_bt_py_per_round": [
                round(t / o, 3) for o, t in zip(our_times, their_times, strict=True)
            ],
        }
    print(
        json.dumps(
            {
                "bench": "replay",
                "clock": "process_time",
                "strategy": "sma_cross",
                "model": "ideal",
                "bars": args.bars,
                "repeat": args.repeat,
                "bars_per_s": ours,
                "bars_per_s_with_csv": round(args.bars / end_to_end),
                # the first quarter has a quarter of the fills: equal speed = no growth
                "bars_per_s_first_quarter": round(quarter / quarter_time),
                "fills": len(report.fills),
                "fills_first_quarter": len(quarter_report.fills),
                "trades": len(report.trades),
                "pnl": f"{report.pnl:.2f}",
                **theirs,
                **ratio,
                **persisted,
            }
        )
    )


async def persist(data: Path, bars: int, seed: int, url: str) -> dict[str, object]:
    configure_logging(json=False, level="WARNING")  # stdout carries the JSON line only
    engine = make_engine(normalize_url(url))
    try:
        start = time.perf_counter()
        report = await run_backtest_persisted(
            data, "sma_cross", dict(PARAMS), seed, engine=engine, settings=IDEAL
        )
        elapsed = time.perf_counter() - start
    finally:
        await engine.dispose()
    return {"persisted_bars_per_s": round(bars / elapsed), "persisted_account": report.account}


if __name__ == "__main__":
    main()
