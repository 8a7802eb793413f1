"""In a backtest the liquidity check takes its volume from the replayed bars."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.backtest import BacktestSettings, run_backtest_persisted
from strategies.base import StrategyLimits
from tests.integration.test_backtest_persist import BTC_DATA, SMA


async def test_a_persisted_backtest_limits_orders_to_a_share_of_the_bars_volume(
    db_engine: AsyncEngine,
) -> None:
    # one millionth of a day's volume (~15000 BTC) is far below the strategy's 2 BTC orders
    settings = BacktestSettings(limits=StrategyLimits(max_volume_fraction=Decimal("0.000001")))
    report = await run_backtest_persisted(
        BTC_DATA, "sma_cross", dict(SMA), 7, engine=db_engine, account="bt-liq", settings=settings
    )
    assert not report.fills
    async with db_engine.connect() as conn:
        decisions = (
            await conn.execute(
                text(
                    "SELECT verdicts FROM decisions WHERE account = 'bt-liq' AND outcome = 'denied'"
                )
            )
        ).all()
    assert decisions
    for (verdicts,) in decisions:
        (share,) = [v for v in verdicts if v["check"] == "max_volume_fraction"]
        assert share["result"] == "reject"
        # the volume of the bar the strategy decided on (a daily bar, in a one-hour window)
        assert share["message"].endswith(" over 3600s)")
        assert Decimal(share["message"].split("volume ")[1].split(" ")[0]) > 1000
