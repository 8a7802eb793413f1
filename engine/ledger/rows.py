"""Order rows as every order read selects them (fill totals derived from ``fills``), and
their mapping to :class:`~engine.domain.orders.Order`."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from engine.domain.orders import Order
from engine.domain.types import (
    TERMINAL_STATES,
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

NON_TERMINAL = [s.value for s in OrderState if s not in TERMINAL_STATES]

ORDER_COLUMNS = """
    o.client_order_id, o.decision_id, o.strategy_id, o.account, o.venue, o.symbol, o.side,
    o.type, o.time_in_force, o.requested_qty, o.limit_price, o.state, o.venue_order_id,
    o.created_at, o.expires_at, o.submitted_at, o.acked_at, o.venue_ts, o.last_error,
    o.lease_epoch
"""

FILL_TOTALS = """
    LEFT JOIN LATERAL (
        SELECT sum(x.qty) AS filled_qty, sum(x.qty * x.price) / NULLIF(sum(x.qty), 0) AS avg_price
        FROM fills x WHERE x.client_order_id = o.client_order_id AND x.account = o.account
    ) f ON true
"""

SELECT_ORDERS = f"SELECT {ORDER_COLUMNS}, f.filled_qty, f.avg_price FROM orders o {FILL_TOTALS}"


# Enum(value) goes through the metaclass on every call; startup maps thousands of rows
_SIDE = {e.value: e for e in Side}
_TYPE = {e.value: e for e in OrderType}
_TIF = {e.value: e for e in TimeInForce}
_STATE = {e.value: e for e in OrderState}


def to_order(m: asyncpg.Record) -> Order:
    return Order(
        client_order_id=ClientOrderId(m["client_order_id"]),
        decision_id=DecisionId(m["decision_id"]),
        strategy_id=StrategyId(m["strategy_id"]),
        account=AccountId(m["account"]),
        venue=VenueName(m["venue"]),
        symbol=Symbol(m["symbol"]),
        side=_SIDE[m["side"]],
        type=_TYPE[m["type"]],
        time_in_force=_TIF[m["time_in_force"]],
        requested_qty=m["requested_qty"],
        limit_price=m["limit_price"],
        state=_STATE[m["state"]],
        venue_order_id=None if m["venue_order_id"] is None else VenueOrderId(m["venue_order_id"]),
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        submitted_at=m["submitted_at"],
        acked_at=m["acked_at"],
        venue_ts=m["venue_ts"],
        last_error=m["last_error"],
        lease_epoch=m["lease_epoch"],
        filled_qty=m["filled_qty"] if m["filled_qty"] is not None else Decimal(0),
        avg_price=m["avg_price"],
    )
