"""The order state machine.

The transition table is the single source of which state may follow which; the ledger applies a
transition with ``UPDATE … WHERE state = ANY(:allowed_from)`` using :func:`allowed_from`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from engine.domain.types import (
    AccountId,
    ClientOrderId,
    DecisionId,
    OrderState,
    OrderType,
    Side,
    StrategyId,
    Symbol,
    TimeInForce,
    VenueName,
    VenueOrderId,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Order:
    """An order as the ledger knows it. ``filled_qty``/``avg_price`` are derived from fills."""

    client_order_id: ClientOrderId
    decision_id: DecisionId
    strategy_id: StrategyId
    account: AccountId
    venue: VenueName
    symbol: Symbol
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    requested_qty: Decimal
    limit_price: Decimal | None
    state: OrderState
    venue_order_id: VenueOrderId | None
    created_at: datetime
    #: the intent's deadline: after it, an order never seen by the venue is not resent
    expires_at: datetime
    submitted_at: datetime | None = None
    acked_at: datetime | None = None
    venue_ts: datetime | None = None
    last_error: str | None = None
    lease_epoch: int | None = None
    filled_qty: Decimal = Decimal(0)
    avg_price: Decimal | None = None

    @property
    def remaining_qty(self) -> Decimal:
        return self.requested_qty - self.filled_qty
