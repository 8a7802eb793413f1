"""Replay throughput: bars per second through a strategy, the live host and the paper venue.

A seeded OHLCV file of ``--bars`` hourly bars is written to a temporary directory, then replayed
with ``sma_cross`` by :func:`engine.backtest.run_backtest` (CSV parsing included) and by
:class:`engine.backtest.Replay` alone (parsing excluded). With ``--database-url`` (a Postgres at
the migrations' head) the same bars are also replayed with ``--persist``'s durable path, into a
fresh ``backtest-…`` account, and timed. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.backtest import (
    BacktestSettings,
    Replay,
    read_ohlcv,
    run_backtest,
    run_backtest_persisted,
)
from engine.domain.types import Symbol
from engine.ledger.db import make_engine, normalize_url
from engine.observability import configure_logging

PARAMS = {"fast": "10", "slow": "30", "qty": "0.5"}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="also time the persisted replay into this ledger")
    args = parser.parse_args()
    persisted: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="tradectl-bench-") as tmp:
        data = Path(tmp) / "bars.csv"
        write_bars(data, args.bars, args.seed)

        start = time.perf_counter()
        report = run_backtest(data, "sma_cross", dict(PARAMS), args.seed)
        end_to_end = time.perf_counter() - start

        bars = read_ohlcv(data, Symbol("BTCUSDT"))
        replay = Replay(bars, "sma_cross", PARAMS, args.seed, settings=BacktestSettings())
        start = time.perf_counter()
        asyncio.run(replay.run())
        replay_only = time.perf_counter() - start

        if args.database_url:
            persisted = asyncio.run(persist(data, args.bars, args.seed, args.database_url))

    print(
        json.dumps(
            {
                "bench": "replay",
                "strategy": "sma_cross",
                "bars": args.bars,
                "bars_per_s": round(args.bars / replay_only),
                "bars_per_s_with_csv": round(args.bars / end_to_end),
                "orders": report.orders,
                "fills": len(report.fills),
                **persisted,
            }
        )
    )


async def persist(data: Path, bars: int, seed: int, url: str) -> dict[str, object]:
    configure_logging(json=False, level="WARNING")  # stdout carries the JSON line only
    engine = make_engine(normalize_url(url))
    try:
        start = time.perf_counter()
        report = await run_backtest_persisted(data, "sma_cross", dict(PARAMS), seed, engine=engine)
        elapsed = time.perf_counter() - start
    finally:
        await engine.dispose()
    return {"persisted_bars_per_s": round(bars / elapsed), "persisted_account": report.account}


if __name__ == "__main__":
    main()
