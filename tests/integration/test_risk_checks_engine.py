"""Every per-order check of the risk gate fires in one running engine against the built-in
Binance-protocol simulator over real sockets: each configured in the strategies TOML (one
strategy per check, its limit in ``[strategy.limits]``), each verdict stored with the decision
with the limit and the value it observed. The touch is 29999.5 / 30000.5 (mid 30000, spread
1/3 bps, 50 BTC a side); the market moves only when the test moves it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import URL

from engine.domain.types import StrategyId
from tests.integration.test_final_gate_engine import ShiftedClock
from tests.integration.test_portfolio_limits_engine import BTC, buy, decide, resting, running

#: strategy id -> its [strategy.limits]
LIMITS: dict[str, dict[str, Any]] = {
    "input-age": {"max_input_age": "2s"},
    "price-age": {"max_quote_age": "5s"},
    "rate": {"max_orders_per_minute": 1},
    "min-spread": {"min_spread_bps": "5"},
    "max-spread": {"max_spread_bps": "0.1"},
    "band": {"price_band_bps": "50"},
    "fat-finger": {"fat_finger_multiple": "5", "typical_order_qty": "0.001"},
    "order-qty": {"max_order_qty": "0.005"},
    "order-notional": {"max_order_notional": "100"},
    "depth": {"max_depth_fraction": "0.1"},
    "position": {"max_position": "0.005"},
    "position-notional": {"max_position_notional": "100"},
    "exposure": {},
    "balance-age": {},
}


def _strategies() -> list[dict[str, Any]]:
    return [
        {
            "id": sid,
            "kind": "fair_value",
            "symbols": [BTC],
            "params": {"fair": "0.5", "edge": "0.01", "qty": "1", "max_inventory": "1"},
            "limits": limits,
        }
        for sid, limits in LIMITS.items()
    ]


async def test_each_per_order_check_fires_through_the_simulator_with_its_values_stored(
    database_url: URL,
) -> None:
    clock = ShiftedClock()
    account = {"max_account_exposure": "50000", "max_balance_age": "5m"}
    async with running(
        database_url, "every-check", account, clock=clock, strategies=_strategies()
    ) as run:

        async def rejected(sid: str, check: str, qty: str, price: str, **kw: Any) -> dict[str, str]:
            outcome, verdicts = await decide(run, buy(StrategyId(sid), BTC, qty, price, sid, **kw))
            assert outcome == "denied", (sid, verdicts)
            verdict = verdicts[check]
            assert verdict["result"] == "reject", (sid, verdict)
            return verdict

        v = await rejected(
            "input-age", "input_age", "0.001", "29000", md_ts=clock() - timedelta(seconds=10)
        )
        assert v["limit"] == "2s"
        assert Decimal(v["observed"].removesuffix("s")) >= 10

        clock.offset = timedelta(seconds=10)  # the newest quote is 10 s old
        v = await rejected("price-age", "price_age", "0.001", "29000", md_ts=clock())
        assert v["limit"] == "5s"
        assert Decimal(v["observed"].removesuffix("s")) >= 10
        clock.offset = timedelta(0)

        await resting(run, buy(StrategyId("rate"), BTC, "0.001", "20000", "rate-1"))
        outcome, verdicts = await decide(run, buy(StrategyId("rate"), BTC, "0.001", "20000", "r2"))
        assert outcome == "denied"
        rate = verdicts["orders_per_minute"]
        assert (rate["result"], rate["limit"], rate["observed"]) == ("reject", "1", "1")

        v = await rejected("min-spread", "min_spread", "0.001", "29000")
        assert (v["limit"], v["observed"][:6]) == ("5", "0.3333")
        v = await rejected("max-spread", "max_spread", "0.001", "29000")
        assert (v["limit"], v["observed"][:6]) == ("0.1", "0.3333")
        v = await rejected("band", "price_band", "0.001", "29000")  # 1000 from mid 30000
        assert (v["limit"], v["observed"][:6]) == ("50", "333.33")
        v = await rejected("fat-finger", "fat_finger", "0.01", "29000")
        assert (v["limit"], v["observed"]) == ("5", "10")
        v = await rejected("order-qty", "max_order_qty", "0.01", "29000")
        assert (v["limit"], v["observed"]) == ("0.005", "0.01")
        v = await rejected("order-notional", "max_order_notional", "0.01", "20000")
        assert (v["limit"], v["observed"]) == ("100", "200")
        v = await rejected("depth", "max_depth_fraction", "10", "29000")  # a buy takes the ask
        assert (v["limit"], v["observed"]) == ("0.1", "0.2")
        assert "ask size 50" in v["message"]
        v = await rejected("position", "max_position_qty", "0.01", "29000")
        assert (v["limit"], v["observed"]) == ("0.005", "0.01")
        v = await rejected("position-notional", "max_position_notional", "0.01", "20000")
        assert (v["limit"], v["observed"]) == ("100", "200")
        # 3 BTC at 20000 is 60000 with the rate strategy's resting 0.001 on top
        v = await rejected("exposure", "max_account_exposure", "3", "20000")
        assert v["limit"] == "50000"
        assert Decimal(v["observed"]) > 60000

        clock.offset = timedelta(minutes=10)  # the balances recorded at start are 10 min old
        v = await rejected("balance-age", "balance_age", "0.001", "29000", md_ts=clock())
        assert v["limit"] == "300s"
        assert Decimal(v["observed"].removesuffix("s")) >= 600
