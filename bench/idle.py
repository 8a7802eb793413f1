"""Idle cost: the engine on the paper venue with many symbols and strategies, quotes moving,
few or no orders. Prints one JSON line::

    {"symbols": 200, "strategies": 4, "cpu_pct": …, "rss_mb": …, "decisions": …, …}

``cpu_pct`` is this process's CPU (the engine and the paper venue; Postgres is another
process) over ``--seconds`` after ``--warmup``, in percent of one core; ``rss_mb`` its resident
memory at the end. The strategies are ``sma_cross`` with 1-minute bars, ``--strategies``
parameter sets on every symbol (they decide once a bar and mostly hold), as a fleet waiting
for its signals would be.

Uses ``DATABASE_URL`` when set (a server where it may create databases), else an embedded
Postgres in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.execution import drop_database, fresh_database, server  # noqa: E402
from engine.config import Settings, VenueKind  # noqa: E402
from engine.domain.types import Symbol  # noqa: E402
from engine.ledger.db import libpq_url  # noqa: E402
from engine.observability import configure_logging  # noqa: E402
from engine.runtime import run  # noqa: E402
from engine.tasks import run_main  # noqa: E402
from engine.venues.paper import defaults  # noqa: E402


def _symbols(n: int) -> list[Symbol]:
    """``n`` BTCUSDT-like symbols the paper venue knows (its rules and walk, renamed)."""
    names = [Symbol(f"S{i:03d}USDT") for i in range(n)]
    rules = dict(defaults.DEFAULT_RULES)
    walks = dict(defaults.DEFAULT_WALKS)
    for name in names:
        rules[name] = dataclasses.replace(rules[defaults.BTCUSDT], symbol=name)
        walks[name] = walks[defaults.BTCUSDT]
    defaults.DEFAULT_RULES = rules
    defaults.DEFAULT_WALKS = walks
    return names


def _config(symbols: list[Symbol], strategies: int, path: Path) -> None:
    # sma_cross trades one symbol: each of the ``strategies`` parameter sets runs once per symbol
    blocks = []
    for i in range(strategies):
        for symbol in symbols:
            blocks.append(
                f"""
[[strategy]]
id = "idle-{i}-{symbol.lower()}"
kind = "sma_cross"
symbols = ["{symbol}"]
bar_interval = "1m"

[strategy.params]
fast = {3 + i}
slow = {20 + i}
qty = "0.001"

[strategy.limits]
max_position = "0.005"
max_order_qty = "0.002"
max_order_notional = "500"
max_quote_age = "5s"
"""
            )
    path.write_text("".join(blocks))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


async def main(n_symbols: int, strategies: int, warmup: float, seconds: float) -> dict[str, Any]:
    symbols = _symbols(n_symbols)
    work = Path(tempfile.mkdtemp(prefix="tradectl-idle-", dir="/tmp"))
    config = work / "strategies.toml"
    _config(symbols, strategies, config)
    async with server() as admin:
        url = await fresh_database(admin)
        try:
            settings = Settings(
                database_url=libpq_url(url),
                venue=VenueKind.PAPER,
                strategies_file=config,
                data_dir=work / "data",
                account="idle",
                status_interval_s=3600,
            )
            stop = asyncio.Event()
            engine = asyncio.create_task(run(settings, stop))
            await asyncio.sleep(warmup)
            if engine.done():
                engine.result()
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
            rss = _rss_mb()
            stop.set()
            await asyncio.wait_for(engine, 30)
        finally:
            await drop_database(admin, url)
    return {
        "symbols": n_symbols,
        "strategies": strategies,
        "seconds": round(elapsed, 1),
        "cpu_pct": round(cpu / elapsed * 100, 1),
        "rss_mb": rss,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--strategies", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    configure_logging(json=True, level="WARNING")
    print(json.dumps(run_main(main(args.symbols, args.strategies, args.warmup, args.seconds))))
