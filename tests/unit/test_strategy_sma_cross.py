from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType

import pytest

from engine.domain.intents import Buy, Hold, Sell
from engine.domain.market import Bar
from engine.domain.types import ClientOrderId, OrderState, Side, StrategyId, Symbol
from strategies.base import OpenOrder, ParamError, Snapshot, StrategyLimits
from strategies.sma_cross import SmaCross, create
from tests.bars import BTC, flat_bar

SID = StrategyId("sma")


def bars(*closes: int | str) -> tuple[Bar, ...]:
    return tuple(flat_bar(i, str(c)) for i, c in enumerate(closes))


def snapshot(
    history: tuple[Bar, ...],
    *,
    position: str = "0",
    limits: StrategyLimits | None = None,
    open_orders: tuple[OpenOrder, ...] = (),
) -> Snapshot:
    last = history[-1]
    return Snapshot(
        strategy_id=SID,
        now=last.close_time,
        md_ts=last.close_time,
        interval_key=last.open_time.isoformat(),
        bars=MappingProxyType({BTC: history}),
        closed_bar=last,
        inventory=MappingProxyType({BTC: Decimal(position)}),
        open_orders=open_orders,
        limits=limits or StrategyLimits(),
    )


STRATEGY = SmaCross(SID, BTC, fast=2, slow=3, qty=Decimal("0.5"))
# fast SMA2 / slow SMA3: previous bar fast 10 <= slow 10, now fast 11 > slow 10.67
CROSS_UP = bars(10, 10, 10, 12)
CROSS_DOWN = bars(10, 10, 10, 8)


def test_holds_while_warming_up() -> None:
    decision = STRATEGY.decide(snapshot(bars(10, 11, 12)))
    assert isinstance(decision, Hold)
    assert decision.reason == "warming up: 3/4 closed bars"


def test_buys_when_fast_crosses_above_slow() -> None:
    decision = STRATEGY.decide(snapshot(CROSS_UP))
    assert isinstance(decision, Buy)
    assert decision.quantity == Decimal("0.5")
    assert decision.limit_price is None
    assert decision.key.interval_key == CROSS_UP[-1].open_time.isoformat()
    assert decision.md_ts == CROSS_UP[-1].close_time
    assert "crossed above" in decision.reason


def test_buy_is_capped_by_max_position_minus_inventory_and_pending_buys() -> None:
    pending = OpenOrder(
        client_order_id=ClientOrderId("t-1"),
        symbol=BTC,
        side=Side.BUY,
        quantity=Decimal("0.3"),
        filled_quantity=Decimal("0.1"),
        limit_price=Decimal(9),
        state=OrderState.PARTIALLY_FILLED,
    )
    limits = StrategyLimits(max_position=Decimal(1))
    decision = STRATEGY.decide(
        snapshot(CROSS_UP, position="0.6", limits=limits, open_orders=(pending,))
    )
    assert isinstance(decision, Buy)
    assert decision.quantity == Decimal("0.2")


def test_holds_on_cross_up_at_max_position() -> None:
    limits = StrategyLimits(max_position=Decimal("0.5"))
    decision = STRATEGY.decide(snapshot(CROSS_UP, position="0.5", limits=limits))
    assert isinstance(decision, Hold)
    assert "at max position" in decision.reason


def test_sells_no_more_than_held_when_fast_crosses_below() -> None:
    decision = STRATEGY.decide(snapshot(CROSS_DOWN, position="0.2"))
    assert isinstance(decision, Sell)
    assert decision.quantity == Decimal("0.2")


def test_holds_on_cross_down_when_flat() -> None:
    decision = STRATEGY.decide(snapshot(CROSS_DOWN))
    assert isinstance(decision, Hold)
    assert "nothing held to sell" in decision.reason


def test_holds_without_a_cross() -> None:
    decision = STRATEGY.decide(snapshot(bars(10, 11, 12, 13), position="1"))
    assert isinstance(decision, Hold)
    assert decision.reason.startswith("no cross: fast above slow")


def test_order_quantity_respects_max_order_limits() -> None:
    limits = StrategyLimits(max_order_notional=Decimal(3))
    decision = STRATEGY.decide(snapshot(CROSS_UP, limits=limits))
    assert isinstance(decision, Buy)
    assert decision.quantity == Decimal(3) / Decimal(12)


def test_decisions_are_deterministic() -> None:
    snap = snapshot(CROSS_UP)
    assert STRATEGY.decide(snap) == STRATEGY.decide(snap)


def test_factory_validates_params_naming_the_field() -> None:
    built = create(SID, [BTC], {"fast": "2", "slow": "5", "qty": "0.01"})
    assert (built.fast, built.slow, built.qty, built.bar_history) == (2, 5, Decimal("0.01"), 6)
    cases = [
        ({"fast": "5", "slow": "5", "qty": "1"}, "slow"),
        ({"fast": "x", "slow": "5", "qty": "1"}, "fast"),
        ({"fast": "30"}, "slow"),
        ({"fast": "2", "slow": "5", "qty": "-1"}, "qty"),
        ({"fast": "2", "slow": "5", "qty": "1", "fsat": "3"}, "fsat"),
    ]
    for params, field in cases:
        with pytest.raises(ParamError) as info:
            create(SID, [BTC], params)
        assert info.value.field == field
    with pytest.raises(ParamError) as info:
        create(SID, [BTC, Symbol("ETHUSDT")], {"fast": "2", "slow": "5", "qty": "1"})
    assert info.value.field == "symbols"


def test_every_param_has_a_default() -> None:
    built = create(SID, [BTC], {})
    assert (built.fast, built.slow, built.qty) == (10, 20, Decimal("0.01"))
