"""How ``binance-sim/`` was made: the Binance simulator's public streams (bookTicker and trade of
BTCUSDT) over a real WebSocket, through the Binance adapter's market stream, recorded with the
engine's recorder (TRADECTL_RECORD_MARKET_DATA's format).

    python tests/resources/marketdata/record_simulator.py OUT_DIR SECONDS
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from decimal import Decimal
from pathlib import Path

from engine.demo import simulator_config
from engine.domain.types import Symbol, VenueName
from engine.marketdata.recording import MarketRecorder
from engine.venues.binance.stream import MarketStream
from engine.venues.simulator import run_simulator


async def record(out: Path, seconds: float) -> int:
    config = simulator_config((Symbol("BTCUSDT"),), seed=15)
    # a calmer walk than the demo's, a step every 0.25 s
    spec = dataclasses.replace(config.symbols[0], step_bps=Decimal(1), touch_size=Decimal("0.2"))
    config = dataclasses.replace(config, symbols=(spec,), market_interval=0.25)
    recorder = MarketRecorder(out)
    async with run_simulator(config) as sim:
        stream = MarketStream(
            stream_url=sim.stream_url,
            symbols=["BTCUSDT"],
            channels=("bookTicker", "trade"),
            venue=VenueName("binance"),
        )

        async def take() -> None:
            async for event in stream.events():
                recorder.write(event)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(take(), timeout=seconds)
    recorder.close()
    return recorder.events


if __name__ == "__main__":
    n = asyncio.run(record(Path(sys.argv[1]), float(sys.argv[2])))
    print(f"recorded {n} events")
