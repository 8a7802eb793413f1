"""What the checks look at besides the intent: the market for its symbol, and the strategy's and
the account's exposure, P&L and recent activity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

from engine.domain.types import Side, Symbol, require_aware

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Exposure:
    """A position in one symbol and the resting orders that could still move it."""

    position: Decimal = ZERO  #: signed: long > 0
    open_buy_qty: Decimal = ZERO  #: unfilled quantity of resting buys
    open_sell_qty: Decimal = ZERO

    def worst_case(self, side: Side) -> Decimal:
        """The position if every resting order on ``side`` filled, signed along ``side``:
        positive means an order on ``side`` makes it larger, negative that it reduces it."""
        if side is Side.BUY:
            return self.position + self.open_buy_qty
        return -self.position + self.open_sell_qty

    def gross(self) -> Decimal:
        """The larger of the worst-case long and short positions, as a magnitude."""
        return max(abs(self.position + self.open_buy_qty), abs(self.position - self.open_sell_qty))


NO_EXPOSURE = Exposure()


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketView:
    """The market for the intent's symbol, as the strategy saw it (or newer, at the final gate)."""

    symbol: Symbol
    bid: Decimal | None
    ask: Decimal | None
    #: our receipt time of the quote
    received_at: datetime | None
    #: traded volume over ``Limits.volume_window``, in base units (``None``: not known)
    recent_volume: Decimal | None = None
    #: visible size at the touch, in base units
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None

    def __post_init__(self) -> None:
        if self.received_at is not None:
            require_aware(self.received_at, "MarketView.received_at")

    @property
    def mid(self) -> Decimal | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2


def _no_exposure() -> Mapping[Symbol, Exposure]:
    return MappingProxyType({})


def _no_marks() -> Mapping[Symbol, Decimal]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountView:
    """What the checks need to know about the strategy and the account."""

    #: this strategy's positions and resting orders
    strategy_exposure: Mapping[Symbol, Exposure] = field(default_factory=_no_exposure)
    #: every strategy of the account together
    account_exposure: Mapping[Symbol, Exposure] = field(default_factory=_no_exposure)
    #: marks for valuing the account's positions in other symbols
    marks: Mapping[Symbol, Decimal] = field(default_factory=_no_marks)
    #: realized + unrealized P&L since the start of the trading day
    pnl_today: Decimal | None = None
    equity: Decimal | None = None
    peak_equity: Decimal | None = None
    #: when this strategy's recent orders were submitted (for the order rate)
    recent_order_times: Sequence[datetime] = ()
    #: our receipt time of the latest balance snapshot
    balances_received_at: datetime | None = None
    typical_order_qty: Decimal | None = None
    #: the account's cash in the asset its limits are in (``Limits`` equity checks add the
    #: positions at their marks to it)
    cash: Decimal | None = None

    def __post_init__(self) -> None:
        if self.balances_received_at is not None:
            require_aware(self.balances_received_at, "AccountView.balances_received_at")
        for at in self.recent_order_times:
            require_aware(at, "AccountView.recent_order_times")
