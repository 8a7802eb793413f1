"""The entry points: replay an OHLCV file in memory (:func:`run_backtest`) or recorded in the
ledger (:func:`run_backtest_persisted`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.backtest.data import load_bars
from engine.backtest.persisted import LedgerTarget
from engine.backtest.replay import Replay
from engine.backtest.report import BacktestReport
from engine.backtest.settings import BacktestSettings
from engine.domain.types import AccountId, utc_now


def run_backtest(
    data: Path,
    strategy: str,
    params: dict[str, str],
    seed: int,
    *,
    settings: BacktestSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestReport:
    """Replay ``data`` (an OHLCV CSV) through the strategy kind ``strategy`` with ``params``.

    Runs its own event loop: call it from synchronous code (the CLI), not from a coroutine;
    there, ``await Replay(...).run()``."""
    settings = settings or BacktestSettings()
    bars = load_bars(data, settings.symbol)
    replay = Replay(
        bars, strategy, params, seed, settings=settings, data_name=str(data), progress=progress
    )
    return asyncio.run(replay.run())


def default_account(strategy: str, seed: int, now: datetime | None = None) -> AccountId:
    """``backtest-<strategy>-<seed>-<UTC timestamp>``: a fresh ledger account per run."""
    stamp = (now or utc_now()).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    # a module path's name only: "my_pkg.mod:MyStrategy" -> "MyStrategy"
    return AccountId(f"backtest-{strategy.rpartition(':')[2]}-{seed}-{stamp}")


async def run_backtest_persisted(
    data: Path,
    strategy: str,
    params: dict[str, str],
    seed: int,
    *,
    engine: AsyncEngine,
    account: str | None = None,
    settings: BacktestSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BacktestReport:
    """:func:`run_backtest`, with every decision, order, event and fill written to the ledger
    at ``engine`` (at the migrations' head) under ``account`` (default
    :func:`default_account`), which must not hold anything yet. Await it on a running loop."""
    settings = settings or BacktestSettings()
    bars = load_bars(data, settings.symbol)
    target = LedgerTarget(
        engine=engine, account=AccountId(account or default_account(strategy, seed))
    )
    replay = Replay(
        bars,
        strategy,
        params,
        seed,
        settings=settings,
        data_name=str(data),
        ledger=target,
        progress=progress,
    )
    return await replay.run()
