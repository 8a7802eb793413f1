from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from engine.domain.intents import Buy, DecisionKey, Hold
from engine.domain.positions import Position
from engine.domain.records import builder, replacer
from engine.domain.types import Asset, Side, StrategyId, Symbol

T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)
KEY = DecisionKey(
    strategy_id=StrategyId("s"), symbol=Symbol("BTCUSDT"), interval_key="w", side=Side.BUY
)


def test_the_quick_replace_gives_what_dataclasses_replace_gives() -> None:
    buy = Buy(key=KEY, reason="cross", md_ts=T0, quantity=Decimal("0.5"))
    quick = replacer(Buy)(buy, strategy_version="3", decision_price=Decimal(100))
    assert quick == dataclasses.replace(buy, strategy_version="3", decision_price=Decimal(100))
    assert type(quick) is Buy
    assert buy.strategy_version is None  # the original is untouched
    position = Position(base_asset=Asset("BTC"), quote_asset=Asset("USDT"))
    moved = replacer(Position)(position, quantity=Decimal(2), fill_count=1)
    assert moved == dataclasses.replace(position, quantity=Decimal(2), fill_count=1)


def test_the_quick_replace_refuses_another_class_and_unknown_fields() -> None:
    hold = Hold(key=dataclasses.replace(KEY, side=None), reason="x", md_ts=T0)
    with pytest.raises(TypeError, match="a Hold, not a Buy"):
        replacer(Buy)(hold)
    with pytest.raises(TypeError):
        replacer(Hold)(hold, quantity=Decimal(1))
    with pytest.raises(TypeError, match="not a dataclass with slots"):
        replacer(int)


def test_the_quick_builder_makes_what_the_constructor_makes_and_still_checks() -> None:
    key = dataclasses.replace(KEY, side=None)
    assert builder(Hold)(key, "x", T0, None, None, None, None) == Hold(
        key=key, reason="x", md_ts=T0
    )
    with pytest.raises(ValueError, match="needs a reason"):  # Hold's __post_init__ ran
        builder(Hold)(key, "", T0, None, None, None, None)
