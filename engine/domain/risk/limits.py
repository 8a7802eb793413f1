"""The checks by name, and the :class:`Limits` that configure them (``None``: not checked)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from engine.domain.risk.loss_marks import LossHaltResume, TradingDay
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
    VOLUME_FRACTION = "max_volume_fraction"  #: of the symbol's traded volume in a window
    DEPTH_FRACTION = "max_depth_fraction"  #: of the visible size at the touch
    POSITION_QTY = "max_position_qty"
    POSITION_NOTIONAL = "max_position_notional"
    #: every strategy of the account together, per symbol
    SYMBOL_QTY = "max_symbol_position"
    SYMBOL_NOTIONAL = "max_symbol_notional"
    POSITION_EQUITY = "max_position_equity_pct"  #: a symbol's notional vs the account's equity
    CATEGORY_GROSS = "max_category_gross"
    CATEGORY_NET = "max_category_net"
    ACCOUNT_EXPOSURE = "max_account_exposure"


CHECK_ORDER: tuple[Check, ...] = tuple(Check)

#: what the final gate checks again between the reservation and the wire: only what can have
#: changed since the order was assessed. The market moves (the quote's age, the spread, the
#: limit against the mid); exposure cannot grow behind the order's back, because every
#: reservation after it was assessed with it counted (and controls are the venue guard's and
#: the reserve transaction's).
FINAL_GATE_CHECKS: tuple[Check, ...] = (
    Check.PRICE_AGE,
    Check.MIN_SPREAD,
    Check.MAX_SPREAD,
    Check.PRICE_BAND,
)

#: the checks that can shrink an order instead of rejecting it
SIZE_CHECKS: frozenset[Check] = frozenset(
    {
        Check.FAT_FINGER,
        Check.ORDER_QTY,
        Check.ORDER_NOTIONAL,
        Check.VOLUME_FRACTION,
        Check.DEPTH_FRACTION,
        Check.POSITION_QTY,
        Check.POSITION_NOTIONAL,
        Check.SYMBOL_QTY,
        Check.SYMBOL_NOTIONAL,
        Check.POSITION_EQUITY,
        Check.CATEGORY_GROSS,
        Check.CATEGORY_NET,
        Check.ACCOUNT_EXPOSURE,
    }
)

#: the checks whose breach halts the engine (and opens an incident), not just this order
HALTING_CHECKS: frozenset[Check] = frozenset({Check.DAILY_LOSS, Check.DRAWDOWN})


def _no_limits() -> Mapping[Symbol, Decimal]:
    return MappingProxyType({})


def _no_categories() -> Mapping[Symbol, str]:
    return MappingProxyType({})


def _no_category_limits() -> Mapping[str, Decimal]:
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
    #: where the trading day of ``max_daily_loss`` starts (00:00 UTC by default)
    trading_day: TradingDay = field(default_factory=TradingDay)
    #: what lifts a halt the daily loss set: an operator, or the next day boundary
    daily_loss_resume: LossHaltResume = LossHaltResume.MANUAL
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
    #: the window ``recent_volume`` is traded over
    volume_window: timedelta = timedelta(hours=1)
    #: largest share of the visible size at the touch one order may take
    max_depth_fraction: Decimal | None = None
    #: account-wide (every strategy) per symbol: worst-case quantity and notional
    max_symbol_position: Mapping[Symbol, Decimal] = field(default_factory=_no_limits)
    max_symbol_notional: Mapping[Symbol, Decimal] = field(default_factory=_no_limits)
    #: a symbol's worst-case notional (every strategy) as a percentage of the account's equity
    max_position_equity_pct: Decimal | None = None
    #: the asset the account's cash is counted in for ``max_position_equity_pct`` (the quote
    #: asset of the symbols it trades, e.g. USDT or USD)
    equity_asset: str | None = None
    #: symbol -> category (e.g. "elections", "l1"); limits per category on the notional of
    #: every strategy together: gross (sum of magnitudes) and net (long minus short)
    categories: Mapping[Symbol, str] = field(default_factory=_no_categories)
    max_category_gross: Mapping[str, Decimal] = field(default_factory=_no_category_limits)
    max_category_net: Mapping[str, Decimal] = field(default_factory=_no_category_limits)
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
            "max_depth_fraction",
            "max_position_equity_pct",
            "fat_finger_multiple",
        ):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, Decimal) or not value.is_finite() or value < 0
            ):
                raise ValueError(f"limit {name} must be a Decimal >= 0, got {value!r}")
        for name in (
            "max_position_qty_by_symbol",
            "max_position_notional_by_symbol",
            "max_symbol_position",
            "max_symbol_notional",
            "max_category_gross",
            "max_category_net",
        ):
            for symbol, value in getattr(self, name).items():
                if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                    raise ValueError(f"limit {name}[{symbol}] must be a Decimal >= 0")
        for name in ("max_price_age", "max_balance_age", "max_input_age"):
            age = getattr(self, name)
            if age is not None and age < timedelta(0):
                raise ValueError(f"limit {name} must not be negative, got {age}")
        if self.volume_window <= timedelta(0):
            raise ValueError(f"limit volume_window must be positive, got {self.volume_window}")
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
