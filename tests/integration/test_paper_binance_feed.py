"""Paper trading on the Binance simulator's public market streams, over real sockets: the paper
venue fills the strategy's orders at the streamed market and the engine records what it got."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import runtime
from engine.config import load_settings
from engine.demo import simulator_config
from engine.domain.market import Quote, Trade
from engine.domain.types import Symbol
from engine.marketdata.recording import read_recording
from engine.venues.simulator import run_simulator
from tests.helpers import ROOT, eventually

ACCOUNT = "paper-binance"


async def test_paper_trades_on_the_binance_public_streams_and_records_them(
    database_url: URL, db_engine: AsyncEngine, tmp_path: Path, monkeypatch: Any
) -> None:
    config = simulator_config((Symbol("BTCUSDT"),), seed=5)
    spec = dataclasses.replace(config.symbols[0], step_bps=Decimal(1))
    config = dataclasses.replace(config, symbols=(spec,), market_interval=0.1)
    recorded = tmp_path / "md"
    async with run_simulator(config) as sim:
        env = {
            "DATABASE_URL": database_url.render_as_string(hide_password=False),
            "TRADECTL_ACCOUNT": ACCOUNT,
            "TRADECTL_VENUE": "paper",
            "TRADECTL_PAPER_FEED": "binance",
            "TRADECTL_BINANCE_STREAM_URL": sim.stream_url,
            "TRADECTL_STRATEGIES_FILE": str(ROOT / "tests/resources/marketdata/paper_sma.toml"),
            "TRADECTL_RECORD_MARKET_DATA": str(recorded),
            "TRADECTL_LOG_LEVEL": "WARNING",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        stop = asyncio.Event()
        engine = asyncio.create_task(runtime.run(load_settings(), stop))
        try:

            async def traded() -> Any:
                if engine.done():
                    engine.result()
                async with db_engine.connect() as conn:
                    return (
                        (
                            await conn.execute(
                                text("SELECT price FROM fills WHERE account = :a"), {"a": ACCOUNT}
                            )
                        )
                        .scalars()
                        .all()
                    )

            prices = await eventually(traded, timeout=60, interval=0.5, message="no paper fill")
        finally:
            stop.set()
            await engine

    events = list(read_recording(recorded))
    quotes = [e for e in events if isinstance(e, Quote)]
    assert quotes
    assert any(isinstance(e, Trade) for e in events)
    # a market order takes the streamed touch (the engine's stream is conflated, so the quote
    # it took may be one the engine skipped: the next one is near)
    touches = {q.ask for q in quotes} | {q.bid for q in quotes}
    for price in prices:
        assert min(abs(price - t) for t in touches) / price < Decimal("0.0005")
