"""The limits an account trades under: account-wide, and per strategy overriding them field by
field (merged once: the book is immutable)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from engine.domain.risk import Check, Limits
from engine.domain.types import StrategyId
from engine.strategy_config import StrategySpec

_DEFAULT_LIMITS = Limits()
_DEFAULT_VOLUME_WINDOW = _DEFAULT_LIMITS.volume_window


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsBook:
    """Account-wide limits, and per-strategy limits that override them field by field."""

    account: Limits = field(default_factory=Limits)
    strategies: Mapping[StrategyId, Limits] = field(default_factory=dict)
    #: configured typical order size, used until a strategy has enough orders of its own
    typical_order_qty: Mapping[StrategyId, Decimal] = field(default_factory=dict)
    #: each strategy's merged limits, built once (the book is immutable): the gate asks for them
    #: for every order and the utilization gauges for every strategy each refresh
    _merged: dict[StrategyId, Limits] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def empty(cls) -> LimitsBook:
        return cls()

    @classmethod
    def from_specs(
        cls, specs: tuple[StrategySpec, ...], account: Limits | None = None
    ) -> LimitsBook:
        per: dict[StrategyId, Limits] = {}
        for spec in specs:
            lim = spec.limits
            per[spec.strategy_id] = Limits(
                max_order_qty=lim.max_order_qty,
                max_order_notional=lim.max_order_notional,
                max_position_qty=lim.max_position,
                max_position_notional=lim.max_position_notional,
                max_orders_per_minute=lim.max_orders_per_minute,
                max_price_age=lim.max_quote_age,
                max_input_age=lim.max_input_age,
                price_band_bps=lim.price_band_bps,
                min_spread_bps=lim.min_spread_bps,
                max_spread_bps=lim.max_spread_bps,
                fat_finger_multiple=lim.fat_finger_multiple,
                max_volume_fraction=lim.max_volume_fraction,
                max_depth_fraction=lim.max_depth_fraction,
                volume_window=lim.volume_window or _DEFAULT_VOLUME_WINDOW,
                resizable=frozenset(Check(c) for c in lim.resize),
            )
        return cls(
            account=account or Limits(),
            strategies=per,
            typical_order_qty={
                s.strategy_id: s.limits.typical_order_qty
                for s in specs
                if s.limits.typical_order_qty is not None
            },
        )

    def any(self, predicate: Callable[[Limits], bool]) -> bool:
        return predicate(self.account) or any(
            predicate(self.for_strategy(s)) for s in self.strategies
        )

    def for_strategy(self, strategy: StrategyId) -> Limits:
        merged = self._merged.get(strategy)
        if merged is None:
            merged = self._merged[strategy] = self._merge(strategy)
        return merged

    def _merge(self, strategy: StrategyId) -> Limits:
        own = self.strategies.get(strategy)
        if own is None:
            return self.account
        overrides = {
            f.name: value
            for f in dataclasses.fields(own)
            if (value := getattr(own, f.name)) != getattr(_DEFAULT_LIMITS, f.name)
        }
        return dataclasses.replace(self.account, **overrides)
