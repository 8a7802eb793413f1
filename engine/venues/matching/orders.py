"""Orders and fills as the core holds them. ``T`` is the shell's timestamp (a ``datetime`` for
the paper venue, epoch milliseconds for the simulator): the core only stamps it, never reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Generic, TypeVar

from engine.domain.types import Liquidity, OrderType, Side, TimeInForce, VenueOrderStatus

T = TypeVar("T")

_ZERO = Decimal(0)
OPEN_STATUSES = frozenset({VenueOrderStatus.NEW, VenueOrderStatus.PARTIALLY_FILLED})


class Expiry(Enum):
    """Why an order expired without filling completely (shells word it their own way)."""

    FOK_UNFILLABLE = "FOK_UNFILLABLE"
    MARKET_EXHAUSTED = "MARKET_EXHAUSTED"
    LIMIT_EXHAUSTED = "LIMIT_EXHAUSTED"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOrder:
    """An order the shell has validated against its protocol's rules."""

    symbol: str
    client_order_id: str
    side: Side
    type: OrderType
    quantity: Decimal
    #: the limit price; ``None`` for a market order
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC


@dataclass(frozen=True, slots=True, kw_only=True)
class Fill(Generic[T]):
    trade_id: int
    symbol: str
    order_id: int
    client_order_id: str
    side: Side
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: Liquidity
    at: T


@dataclass(slots=True, kw_only=True)
class Order(Generic[T]):
    """One order, mutable inside the core only; events carry copies (:meth:`snapshot`)."""

    order_id: int
    symbol: str
    client_order_id: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    price: Decimal | None
    quantity: Decimal
    created: T
    updated: T
    #: arrival sequence, for time priority among resting orders
    seq: int
    filled: Decimal = _ZERO
    cumulative_quote: Decimal = _ZERO
    status: VenueOrderStatus = VenueOrderStatus.NEW
    #: what this order still holds of its spend asset; released as it fills or closes
    locked: Decimal = _ZERO
    #: the lock per unit of quantity, so each fill releases its own share
    lock_per_unit: Decimal = _ZERO
    expiry: Expiry | None = None
    fills: list[Fill[T]] = field(default_factory=list)

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def snapshot(self) -> Order[T]:
        """A copy for an event: later fills do not change what the event said."""
        return Order(
            order_id=self.order_id,
            symbol=self.symbol,
            client_order_id=self.client_order_id,
            side=self.side,
            type=self.type,
            time_in_force=self.time_in_force,
            price=self.price,
            quantity=self.quantity,
            created=self.created,
            updated=self.updated,
            seq=self.seq,
            filled=self.filled,
            cumulative_quote=self.cumulative_quote,
            status=self.status,
            locked=self.locked,
            lock_per_unit=self.lock_per_unit,
            expiry=self.expiry,
            fills=list(self.fills),
        )
