"""The liquidity checks on live market data: the simulator's trade and book-ticker streams,
read by the Binance adapter over real sockets into the conflator, limit an order through the
real gate (rejected, or resized where the strategy asks for it); the stored verdicts keep the
volume and the touch size they used."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.controls import LeaseKeeper
from engine.domain.intents import Buy, DecisionKey
from engine.domain.types import Side, StrategyId, Symbol, TimeInForce, utc_now
from engine.execution import Execution, ExecutionConfig
from engine.ledger.ledger import Ledger
from engine.limits_book import LimitsBook
from engine.marketdata.conflator import Conflator
from engine.portfolio import Portfolio
from engine.risk_gate import RiskGate
from engine.strategy_config import parse_trading_config
from tests.contract.test_binance_simulator_contract import binance_on_simulator
from tests.helpers import eventually

BTCUSDT = Symbol("BTCUSDT")
ACCOUNT = "liquidity"
STRATEGY = StrategyId("liq")
RESIZING = StrategyId("liq-resize")
HOUR = timedelta(hours=1)


async def test_volume_and_depth_from_the_simulator_streams_reject_an_order_too_large(
    db_engine: AsyncEngine,
) -> None:
    trading = parse_trading_config(
        {
            "strategy": [
                {
                    "id": STRATEGY,
                    "kind": "sma_cross",
                    "symbols": [BTCUSDT],
                    "bar_interval": "1m",
                    "params": {"fast": 3, "slow": 8, "qty": "0.001"},
                    "limits": {
                        "max_volume_fraction": "0.5",
                        "volume_window": "1h",
                        "max_depth_fraction": "0.25",
                    },
                },
                {
                    "id": RESIZING,
                    "kind": "sma_cross",
                    "symbols": [BTCUSDT],
                    "bar_interval": "1m",
                    "params": {"fast": 3, "slow": 8, "qty": "0.001"},
                    "limits": {
                        "max_volume_fraction": "0.5",
                        "volume_window": "1h",
                        "resize": ["max_volume_fraction"],
                    },
                },
            ]
        },
        source=Path("<test>"),
    )
    async with binance_on_simulator() as rig:
        conflator = Conflator(detect_gaps=False)

        async def feed() -> None:
            async for event in rig.venue.market_stream([BTCUSDT]):
                conflator.publish(event)

        feeding = asyncio.create_task(feed())
        try:

            def traded() -> Decimal | None:
                rig.sim.step()
                volume = conflator.volumes.volume(BTCUSDT, HOUR, utc_now())
                return volume if volume and conflator.quote(BTCUSDT) else None

            await eventually(traded, message="no trade reached the conflator")
            rig.sim.step(5)
            await eventually(lambda: conflator.volumes.volume(BTCUSDT, HOUR, utc_now()))
        finally:
            feeding.cancel()
            await asyncio.gather(feeding, return_exceptions=True)
        volume = conflator.volumes.volume(BTCUSDT, HOUR, utc_now())
        touch = conflator.quote(BTCUSDT)
        assert volume is not None
        assert touch is not None

        ledger = Ledger(db_engine, account=ACCOUNT, venue=rig.venue.name)
        lease = LeaseKeeper(ledger, ttl=timedelta(seconds=30))
        await lease.acquire()
        portfolio = Portfolio(db_engine, ACCOUNT)
        gate = RiskGate(
            limits=LimitsBook.from_specs(trading.strategies, account=trading.account_limits),
            market=conflator,
            portfolio=portfolio,
            ledger=ledger,
            refresh_interval_s=0,
        )
        execution = Execution(
            ledger=ledger,
            venue=rig.venue,
            gate=gate,
            lease=lease,
            config=ExecutionConfig(account=ACCOUNT, order_id_prefix="liq"),
        )
        await execution.process(
            [
                Buy(
                    key=DecisionKey(
                        strategy_id=sid, symbol=BTCUSDT, interval_key="big", side=Side.BUY
                    ),
                    reason="test",
                    md_ts=utc_now(),
                    quantity=volume,  # twice the allowed half of the hour's volume
                    limit_price=touch.bid,
                    time_in_force=TimeInForce.GTC,
                )
                for sid in (STRATEGY, RESIZING)
            ]
        )

        async def verdicts_of(sid: StrategyId) -> dict[str, dict[str, str]]:
            async with db_engine.connect() as conn:
                (verdicts,) = (
                    await conn.execute(
                        text("SELECT verdicts FROM decisions WHERE strategy_id = :s"), {"s": sid}
                    )
                ).one()
            return {v["check"]: v for v in verdicts}

        # configured to resize: the order shrinks to half the hour's volume and goes out
        shrunk = (await verdicts_of(RESIZING))["max_volume_fraction"]
        assert (shrunk["result"], shrunk["limit"], shrunk["observed"]) == ("resize", "0.5", "1")
        [order] = await ledger.orders.open(RESIZING)
        assert 0 < order.requested_qty <= volume / 2  # the lot step may round it down
        by_check = await verdicts_of(STRATEGY)
        share = by_check["max_volume_fraction"]
        assert (share["result"], share["limit"], share["observed"]) == ("reject", "0.5", "1")
        assert f"volume {volume.normalize():f} over 3600s" in share["message"]
        depth = by_check["max_depth_fraction"]
        assert f"ask size {touch.ask_size.normalize():f}" in depth["message"]
        assert await ledger.orders.open(STRATEGY) == []
