"""``tradectl compare``'s work: read the paper account, replay its period, pair the trades."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from engine.compare.diff import Comparison, Tolerance, aggregate, compare
from engine.compare.replay import RecordedReplay
from engine.config import Settings
from engine.domain.stage import Stage, Staging
from engine.domain.types import ClientOrderId, Side, StrategyId, Symbol
from engine.exceptions import TradectlError
from engine.ledger.paper_trades import paper_fills, paper_run
from engine.marketdata.recording import read_recording
from engine.strategy_config import load_trading_config
from engine.venues.paper.session import fill_model_of


async def compare_with_backtest(
    engine: AsyncEngine,
    settings: Settings,
    *,
    account: str,
    data: Path,
    config: Path,
    tolerance: Tolerance,
) -> Comparison:
    """The paper ``account``'s trades against a replay of ``data`` through the strategies of
    ``config`` it ran, with the fill model and seed of ``settings``."""
    run = await paper_run(engine, account)
    if run is None:
        raise TradectlError(f"account {account} has no decisions to compare")
    paper = aggregate(
        [
            (ClientOrderId(c), StrategyId(s), Symbol(sym), Side(side), qty, price, at)
            for c, s, sym, side, qty, price, at in await paper_fills(engine, account)
        ]
    )
    specs = [s for s in load_trading_config(config).strategies if s.strategy_id in run.strategies]
    if not specs:
        raise TradectlError(
            f"none of account {account}'s strategies ({', '.join(run.strategies)}) is in {config}"
        )
    staging = None
    if run.stage is not None and run.capital_fraction is not None:
        staging = Staging(Stage(run.stage), run.capital_fraction)
    margin = timedelta(seconds=float(tolerance.time_s))
    events = (e for e in read_recording(data) if e.received_at <= run.last + margin)
    replay = RecordedReplay(
        events,
        specs,
        fill_model=fill_model_of(settings),
        seed=settings.seed,
        prefix=settings.order_id_prefix,
        staging=staging,
    )
    replayed = await replay.run()
    in_period = []
    for trade in replayed:
        decided = replay.decided_at(trade.client_order_id)
        if decided is not None and run.first - margin <= decided <= run.last + margin:
            in_period.append(trade)
    return compare(paper, in_period, tolerance)
