"""Idle cost: the engine on the paper venue with many symbols and strategies, quotes moving,
few or no orders. Prints one JSON line::

    {"symbols": 200, "strategies": 4, "cpu_pct": …, "rss_mb": …, "decisions": …, …}

``cpu_pct`` is this process's CPU (the engine and the paper venue) over ``--seconds`` after
``--warmup``, in percent of one core; ``rss_mb`` its resident memory at the end. ``pg_cpu_pct``
is the database server's CPU over the same time (its postmaster and every backend; only for the
embedded server, which serves nobody else: ``null`` with ``DATABASE_URL``), so reads the engine
moved into the database still count; ``db_xacts_per_s`` its transactions (reads too). The
strategies are ``sma_cross`` with 1-minute bars, ``--strategies`` parameter sets on every
symbol (they decide once a bar and mostly hold), as a fleet waiting for its signals would be.

Uses ``DATABASE_URL`` when set (a server where it may create databases), else an embedded
Postgres in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from bench.execution import drop_database, fresh_database, server  # noqa: E402
from engine.config import Settings, VenueKind  # noqa: E402
from engine.domain.types import Symbol  # noqa: E402
from engine.ledger.db import asyncpg_connect_kwargs, libpq_url  # noqa: E402
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


def _postgres_ticks(admin: Any) -> int | None:
    """CPU clock ticks of the embedded server (postmaster and its children) so far."""
    if os.environ.get("DATABASE_URL"):
        return None
    pid_file = Path(admin.query["host"]) / "postmaster.pid"
    postmaster = int(pid_file.read_text().split()[0])
    ticks = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            # the fields after the command's ")": state, ppid, ... utime (14th), stime (15th)
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(proc.name) == postmaster or int(fields[1]) == postmaster:
            ticks += int(fields[11]) + int(fields[12])
    return ticks


async def _transactions(admin: Any, url: Any) -> int:
    """Transactions the engine's database has run so far (reads included: each is a round trip
    and server work)."""
    conn = await asyncpg.connect(**asyncpg_connect_kwargs(admin))
    try:
        n = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
            url.database,
        )
    finally:
        await conn.close()
    return int(n)


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
            pg0, xacts0 = _postgres_ticks(admin), await _transactions(admin, url)
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            cpu, elapsed = time.process_time() - cpu0, time.perf_counter() - t0
            pg1 = _postgres_ticks(admin)
            # the statistics collector publishes at most every 0.5 s: read after it has
            await asyncio.sleep(1)
            xacts = await _transactions(admin, url) - xacts0
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
        "db_xacts_per_s": round(xacts / elapsed, 1),
        "pg_cpu_pct": (
            None
            if pg0 is None or pg1 is None
            else round((pg1 - pg0) / os.sysconf("SC_CLK_TCK") / elapsed * 100, 1)
        ),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--strategies", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=15.0)
    # a whole bar interval (1m): every window holds exactly one bar close, when all decide
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    configure_logging(json=True, level="WARNING")
    print(json.dumps(run_main(main(args.symbols, args.strategies, args.warmup, args.seconds))))
