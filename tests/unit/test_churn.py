"""Churn, the chaos suite's load generator: it never sells below ``min_position`` (0 unless
told: never short), and with a negative one it sells short (a NO position on Kalshi)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.domain.types import StrategyId, Symbol
from strategies.base import ParamError
from strategies.churn import Churn
from strategies.testing import StrategyHarness, buys, sells

MARKET = Symbol("KX-A")


def decisions(min_position: Decimal, position: int, quotes: int = 12) -> tuple[int, int]:
    """Buys and sells over ``quotes`` windows, the position reset to ``position`` each time."""
    churn = Churn(
        StrategyId("c"), (MARKET,), qty=Decimal(5), max_position=Decimal(20),
        min_position=min_position,
    )  # fmt: skip
    harness = StrategyHarness(churn)
    bought = sold = 0
    for _ in range(quotes):
        harness.set_position(position, MARKET)
        intents = harness.quote(bid="0.45", ask="0.47", symbol=MARKET)
        bought += len(buys(intents))
        sold += len(sells(intents))
    return bought, sold


def test_a_flat_churn_never_sells_unless_it_may_go_short() -> None:
    assert decisions(Decimal(0), position=0)[1] == 0
    assert decisions(Decimal(-10), position=0)[1] > 0


def test_churn_stops_selling_at_its_min_position() -> None:
    assert decisions(Decimal(-10), position=-10)[1] == 0
    assert decisions(Decimal(-10), position=-5)[1] > 0


def test_a_positive_min_position_is_refused() -> None:
    with pytest.raises(ParamError, match="min_position"):
        Churn(StrategyId("c"), (MARKET,), qty=Decimal(1), max_position=Decimal(2),
              min_position=Decimal(1))  # fmt: skip
