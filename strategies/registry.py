"""Strategy kinds by name, for the config file and the backtest.

A factory takes ``(strategy_id, symbols, params)`` with params as text (the config's values turned
into strings, so decimals stay exact) and raises :class:`strategies.base.ParamError` naming the
field when a param is missing or wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from engine.domain.types import StrategyId, Symbol
from strategies import churn, fair_value, sma_cross
from strategies.base import Strategy

StrategyFactory = Callable[[StrategyId, Sequence[Symbol], Mapping[str, str]], Strategy]

REGISTRY: Mapping[str, StrategyFactory] = MappingProxyType(
    {
        "sma_cross": sma_cross.create,
        "fair_value": fair_value.create,
        "churn": churn.create,
    }
)


def create_strategy(
    kind: str, strategy_id: StrategyId, symbols: Sequence[Symbol], params: Mapping[str, str]
) -> Strategy:
    """Build a strategy of a registered kind; ``KeyError`` names the known kinds."""
    try:
        factory = REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown strategy kind {kind!r}; known kinds: {sorted(REGISTRY)}") from None
    return factory(strategy_id, symbols, params)
