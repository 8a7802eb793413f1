"""The checks by name, and the :class:`Limits` that configure them (``None``: not checked)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from engine.domain.types import Symbol


class Check(StrEnum):
    """Check names, as stored in verdicts. Declaration order is the evaluation order."""

    INPUT_AGE = "input_age"  #: now - intent.md_ts
    PRICE_AGE = "price_age"  #: now - quote received_at
    BALANCE_AGE = "balance_age"  #: now - balances received_at
    DAILY_LOSS = "daily_loss"  #: halts the engine when crossed
    DRAWDOWN = "drawdown"  #: halts the engine when crossed
    ORDER_RATE = "orders_per_minute"
    MIN_SPREAD = "min_spread"  #: a crossed, locked or implausibly tight book
    MAX_SPREAD = "max_spread"  #: liquidity has gone
    PRICE_BAND = "price_band"  #: limit price vs mid
    FAT_FINGER = "fat_finger"  #: vs the strategy's typical order size
    ORDER_QTY = "max_order_qty"
    ORDER_NOTIONAL = "max_order_notional"
    VOLUME_FRACTION = "max_volume_fraction"
    POSITION_QTY = "max_position_qty"
    POSITION_NOTIONAL = "max_position_notional"
    ACCOUNT_EXPOSURE = "max_account_exposure"


CHECK_ORDER: tuple[Check, ...] = tuple(Check)

#: the checks that can shrink an order instead of rejecting it
SIZE_CHECKS: frozenset[Check] = frozenset(
    {
        Check.FAT_FINGER,
        Check.ORDER_QTY,
        Check.ORDER_NOTIONAL,
        Check.VOLUME_FRACTION,
        Check.POSITION_QTY,
        Check.POSITION_NOTIONAL,
        Check.ACCOUNT_EXPOSURE,
    }
)

#: the checks whose breach halts the engine (and opens an incident), not just this order
HALTING_CHECKS: frozenset[Check] = frozenset({Check.DAILY_LOSS, Check.DRAWDOWN})


def _no_limits() -> Mapping[Symbol, Decimal]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Every field is optional: ``None`` means the check is not configured.

    Money is in the quote asset. ``max_daily_loss`` and ``max_drawdown`` are positive amounts.
    """

    max_order_qty: Decimal | None = None
    max_order_notional: Decimal | None = None
    #: default for every symbol; ``*_by_symbol`` overrides it per symbol
    max_position_qty: Decimal | None = None
    max_position_qty_by_symbol: Mapping[Symbol, Decimal] = field(default_factory=_no_limits)
    max_position_notional: Decimal | None = None
    max_position_notional_by_symbol: Mapping[Symbol, Decimal] = field(default_factory=_no_limits)
    #: gross notional over every symbol and every strategy of the account
    max_account_exposure: Decimal | None = None
    max_daily_loss: Decimal | None = None
    #: peak equity minus equity
    max_drawdown: Decimal | None = None
    max_orders_per_minute: int | None = None
    max_price_age: timedelta | None = None
    max_balance_age: timedelta | None = None
    max_input_age: timedelta | None = None
    #: the largest allowed distance of a limit price from mid, in basis points of mid
    price_band_bps: Decimal | None = None
    min_spread_bps: Decimal | None = None
    max_spread_bps: Decimal | None = None
    #: largest share of ``MarketView.recent_volume`` one order may take (0.1 = 10 %)
    max_volume_fraction: Decimal | None = None
    #: the largest multiple of ``AccountView.typical_order_qty`` one order may be
    fat_finger_multiple: Decimal | None = None
    #: size checks allowed to RESIZE instead of REJECT
    resizable: frozenset[Check] = frozenset()

    def __post_init__(self) -> None:
        for name in (
            "max_order_qty",
            "max_order_notional",
            "max_position_qty",
            "max_position_notional",
            "max_account_exposure",
            "max_daily_loss",
            "max_drawdown",
            "price_band_bps",
            "min_spread_bps",
            "max_spread_bps",
            "max_volume_fraction",
            "fat_finger_multiple",
        ):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, Decimal) or not value.is_finite() or value < 0
            ):
                raise ValueError(f"limit {name} must be a Decimal >= 0, got {value!r}")
        for name in ("max_position_qty_by_symbol", "max_position_notional_by_symbol"):
            for symbol, value in getattr(self, name).items():
                if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                    raise ValueError(f"limit {name}[{symbol}] must be a Decimal >= 0")
        for name in ("max_price_age", "max_balance_age", "max_input_age"):
            age = getattr(self, name)
            if age is not None and age < timedelta(0):
                raise ValueError(f"limit {name} must not be negative, got {age}")
        if self.max_orders_per_minute is not None and self.max_orders_per_minute < 0:
            raise ValueError("limit max_orders_per_minute must be >= 0")
        wrong = {Check(c) for c in self.resizable} - SIZE_CHECKS
        if wrong:
            raise ValueError(
                f"only size checks can resize; not: {sorted(wrong)} "
                f"(size checks: {sorted(SIZE_CHECKS)})"
            )

    def position_qty_limit(self, symbol: Symbol) -> Decimal | None:
        return self.max_position_qty_by_symbol.get(symbol, self.max_position_qty)

    def position_notional_limit(self, symbol: Symbol) -> Decimal | None:
        return self.max_position_notional_by_symbol.get(symbol, self.max_position_notional)
