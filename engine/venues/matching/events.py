"""What one core call did, in the order it happened; each shell turns these into its protocol's
messages (the paper venue's reports, the simulator's ``executionReport``s)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

from engine.venues.matching.orders import Fill, Order

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted(Generic[T]):
    order: Order[T]


@dataclass(frozen=True, slots=True, kw_only=True)
class Filled(Generic[T]):
    order: Order[T]
    fill: Fill[T]


@dataclass(frozen=True, slots=True, kw_only=True)
class Closed(Generic[T]):
    """Canceled or expired (the order's status says which, its ``expiry`` why)."""

    order: Order[T]


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceLine:
    asset: str
    free: Decimal
    locked: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancesMoved:
    """The balances of ``lines`` (sorted by asset) just changed to these values."""

    lines: tuple[BalanceLine, ...]


Event = Accepted[T] | Filled[T] | Closed[T] | BalancesMoved
