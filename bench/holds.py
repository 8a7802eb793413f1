"""Hold retention: ``decisions`` rows written per hour by the example strategies.

Each ``[[strategy]]`` of ``strategies/example.toml`` (its kind, symbols, params and limits) is
replayed with ``tradectl backtest --persist``'s durable path over ``--hours`` of seeded market
data at its live cadence: bars of its ``bar_interval`` (sma-btc: 5 s), or one bar per
``decision_window`` for a quote strategy (fv-pres: 1 s), so it decides as often as it does live.
Every decision takes the live execution path into a fresh ledger account; then the rows are
counted. ``hold_decisions`` is how many holds the strategies made, ``hold_rows`` how many rows
they took (a hold is a row when its reason changes, engine/domain/holds.py).

Uses ``--database-url`` (a Postgres at the migrations' head), or else an embedded Postgres in a
temporary directory. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from engine.backtest import BacktestSettings, run_backtest_persisted
from engine.ledger.db import make_engine, normalize_url, upgrade_head
from engine.ledger.embedded import embedded_postgres
from engine.observability import configure_logging
from engine.strategy_config import StrategySpec, load_strategy_config

EXAMPLE = Path(__file__).resolve().parent.parent / "strategies" / "example.toml"

_COUNT = text(
    """SELECT count(*) FILTER (WHERE intent = 'hold'),
              COALESCE(sum(1 + repeats) FILTER (WHERE intent = 'hold'), 0),
              count(*) FILTER (WHERE intent <> 'hold')
       FROM decisions WHERE account = :account"""
)


def cadence(spec: StrategySpec) -> timedelta:
    return spec.bar_interval if spec.bar_interval is not None else spec.decision_window


def write_bars(path: Path, spec: StrategySpec, hours: float, seed: int) -> int:
    """A seeded random walk at the strategy's cadence: BTC-like prices for a USDT pair, a
    probability wandering around the strategy's fair value for a prediction market."""
    rng = random.Random(seed)
    step = cadence(spec)
    n = int(timedelta(hours=hours) / step)
    binary = not spec.symbols[0].endswith("USDT")
    fair = float(spec.params.get("fair", "0.5"))
    price = fair if binary else 30_000.0
    t = datetime(2026, 1, 1, tzinfo=UTC)
    lines = ["Date,Open,High,Low,Close,Volume"]
    for _ in range(n):
        if binary:
            # mean-reverting, in ticks of 0.001, inside (0, 1)
            close = price + 0.002 * (fair - price) + rng.gauss(0, 0.002)
            close = min(max(close, 0.01), 0.99)
            fmt = "{:.3f}"
        else:
            close = price * math.exp(rng.gauss(0, 0.0003))
            fmt = "{:.2f}"
        high, low = max(price, close), min(price, close)
        volume = 50 * math.exp(rng.gauss(0, 0.4))
        row = [fmt.format(v) for v in (price, high, low, close)]
        lines.append(f"{t.isoformat()},{','.join(row)},{volume:.5f}")
        price = float(fmt.format(close))
        t += step
    path.write_text("\n".join(lines) + "\n")
    return n


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with (
        tempfile.TemporaryDirectory(prefix="tradectl-bench-", dir="/tmp") as tmp,
        embedded_postgres(Path(tmp) / "pg", delete=True) as embedded,
    ):
        yield embedded


async def measure(url: str, hours: float, seed: int, tmp: Path) -> dict[str, object]:
    db = normalize_url(url)
    await upgrade_head(db)
    engine = make_engine(db)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    strategies: dict[str, dict[str, int]] = {}
    try:
        for spec in load_strategy_config(EXAMPLE):
            data = tmp / f"{spec.strategy_id}.csv"
            bars = write_bars(data, spec, hours, seed)
            settings = dataclasses.replace(
                BacktestSettings.for_symbol(spec.symbols[0]), limits=spec.limits
            )
            account = f"bench-holds-{spec.strategy_id}-{stamp}"
            await run_backtest_persisted(
                data,
                spec.kind,
                dict(spec.params),
                seed,
                engine=engine,
                account=account,
                settings=settings,
            )
            async with engine.connect() as conn:
                rows, holds, others = (await conn.execute(_COUNT, {"account": account})).one()
            strategies[spec.strategy_id] = {
                "decisions": bars,
                "hold_decisions": int(holds),
                "hold_rows": int(rows),
                "other_rows": int(others),
            }
    finally:
        await engine.dispose()
    rows_total = sum(s["hold_rows"] for s in strategies.values())
    return {
        "hold_rows_per_hour": round(rows_total / hours, 1),
        "hold_rows_per_day": round(rows_total / hours * 24),
        "hold_decisions_per_hour": round(
            sum(s["hold_decisions"] for s in strategies.values()) / hours, 1
        ),
        "strategies": strategies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="market data replayed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--database-url", help="a Postgres to record into (else embedded)")
    args = parser.parse_args()
    configure_logging(json=False, level="WARNING")  # stdout carries the JSON line only
    start = time.perf_counter()
    with (
        database(args.database_url) as url,
        tempfile.TemporaryDirectory(prefix="tradectl-bench-") as tmp,
    ):
        result = asyncio.run(measure(url, args.hours, args.seed, Path(tmp)))
    print(
        json.dumps(
            {
                "bench": "holds",
                "hours": args.hours,
                "seed": args.seed,
                **result,
                "elapsed_s": round(time.perf_counter() - start, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
