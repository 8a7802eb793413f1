"""Orders: reserve (:mod:`engine.ledger.reservations`), the venue's answers and transitions
(:mod:`engine.ledger.reports`), and lookups."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.domain.alerts import rejected_alert
from engine.domain.orders import Order
from engine.domain.types import (
    UNRESOLVED,
    ClientOrderId,
    OrderState,
    StrategyId,
    Symbol,
)
from engine.exceptions import StateConflict
from engine.ledger.alerts import insert_alert
from engine.ledger.listings import Listings
from engine.ledger.reports import Reporting
from engine.ledger.reservations import SQL_GET_ORDERS, Reserving
from engine.ledger.rows import FILL_TOTALS, NON_TERMINAL, ORDER_COLUMNS, SELECT_ORDERS, to_order
from engine.ledger.statements import Statement, dumps, retry_transient

SQL_GET_ORDER = Statement(
    f"{SELECT_ORDERS} WHERE o.client_order_id = :client_order_id AND o.account = :account"
)
SQL_NON_TERMINAL_ORDERS = Statement(
    f"""{SELECT_ORDERS}
    WHERE o.account = :account AND o.state IN ({", ".join(repr(s) for s in NON_TERMINAL)})
    ORDER BY o.created_at, o.client_order_id"""
)
# What the resolver looks up: only these states, so thousands of resting orders cost nothing
SQL_UNRESOLVED_ORDERS = Statement(
    f"""{SELECT_ORDERS}
    WHERE o.account = :account AND o.state IN ({", ".join(repr(s.value) for s in UNRESOLVED)})
    ORDER BY o.created_at, o.client_order_id"""
)
SQL_NON_TERMINAL_SYMBOLS = Statement(
    f"""SELECT DISTINCT o.symbol FROM orders o
    WHERE o.account = :account AND o.state IN ({", ".join(repr(s) for s in NON_TERMINAL)})"""
)
# Orders the venue said were filled further than the ledger has fills for: a fill that raced a
# cancel, whose trades could not be fetched before the order closed (or before a crash).
SQL_ORDERS_OWED_FILLS = Statement(
    f"""SELECT {ORDER_COLUMNS}, f.filled_qty, f.avg_price, v.venue_filled
    FROM orders o {FILL_TOTALS}
    JOIN LATERAL (
        SELECT max(CAST(e.detail->>'venue_filled_qty' AS numeric)) AS venue_filled
        FROM order_events e
        WHERE e.client_order_id = o.client_order_id AND e.account = o.account
          AND e.detail ? 'venue_filled_qty'
    ) v ON true
    WHERE o.account = :account AND o.updated_at >= :since
      AND v.venue_filled > COALESCE(f.filled_qty, 0)
    ORDER BY o.created_at, o.client_order_id"""
)
SQL_OPEN_ORDERS_OF_STRATEGY = Statement(
    f"""{SELECT_ORDERS}
    WHERE o.account = :account AND o.strategy_id = :strategy_id
      AND o.state IN ({", ".join(repr(s) for s in NON_TERMINAL)})
    ORDER BY o.created_at, o.client_order_id"""
)


class Orders(Reserving, Listings, Reporting):
    """``ledger.orders``: an order's life from its reservation to a terminal state."""

    @retry_transient
    async def mark_unknown(
        self, client_order_id: ClientOrderId, error: str, *, submitted_at: datetime | None
    ) -> Order:
        """The submit's outcome is ambiguous: ``UNKNOWN`` until the venue is asked.

        Only a pending submit becomes ``UNKNOWN``: an order that already moved on (a stream
        report can beat the timed-out REST answer) keeps its better-known state and only
        records the error.
        """
        try:
            return await self.transition(
                client_order_id,
                OrderState.UNKNOWN,
                cause="submit_ambiguous",
                error=error,
                submitted_at=submitted_at,
            )
        except StateConflict:
            pass
        # The order moved on while the answer was lost; the stream (or a lookup) may move it
        # again between the re-read and the write, so re-read until the note lands.
        for _ in range(5):
            current = await self.get(client_order_id)
            if current is None:  # pragma: no cover - orders are never deleted
                raise self._unknown(client_order_id)
            try:
                return await self.transition(
                    client_order_id,
                    current.state,
                    cause="submit_ambiguous",
                    error=error,
                    submitted_at=submitted_at,
                )
            except StateConflict:
                continue
        raise StateConflict(f"order {client_order_id} kept changing while recording: {error}")

    @retry_transient
    async def mark_rejected(
        self, client_order_id: ClientOrderId, reason: str, *, submitted_at: datetime | None
    ) -> Order:
        """The venue refused definitively: nothing was placed. The rejection's alert is written
        in the same transaction, once (a rejection recorded again raises none)."""
        now = self._clock()
        async with self._tx() as db:
            row = await self._update_row(
                db,
                client_order_id=client_order_id,
                to=OrderState.REJECTED,
                now=now,
                cause="submit_rejected",
                error=reason,
                submitted_at=submitted_at,
            )
            order = to_order(row)
            if row["from_state"] != OrderState.REJECTED.value:
                alert = rejected_alert(
                    client_order_id=order.client_order_id,
                    strategy_id=order.strategy_id,
                    symbol=order.symbol,
                    side=order.side.value,
                    quantity=order.requested_qty,
                    reason=reason,
                )
                await insert_alert(db, account=self.account, draft=alert, now=now)
        return order

    @retry_transient
    async def expire(self, client_order_id: ClientOrderId, reason: str) -> Order:
        """The intent is no longer valid and the order is known not to be on the venue."""
        return await self.transition(
            client_order_id, OrderState.EXPIRED, cause="expired", error=reason
        )

    @retry_transient
    async def request_cancel(self, client_order_id: ClientOrderId, cause: str) -> Order:
        return await self.transition(client_order_id, OrderState.PENDING_CANCEL, cause=cause)

    @retry_transient
    async def transition(
        self,
        client_order_id: ClientOrderId,
        to: OrderState,
        *,
        cause: str,
        venue_ts: datetime | None = None,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
        submitted_at: datetime | None = None,
    ) -> Order:
        """Move an order to ``to`` if the transition table allows it from its current state.

        Already in ``to``: a no-op. Otherwise a state the table does not allow raises
        :class:`StateConflict` naming both states.
        """
        async with self._connection() as db:
            return await self._update(
                db,
                client_order_id=client_order_id,
                to=to,
                now=self._clock(),
                cause=cause,
                detail=None if detail is None else dumps(detail),
                venue_ts=venue_ts,
                error=error,
                submitted_at=submitted_at,
            )

    async def get(self, client_order_id: ClientOrderId) -> Order | None:
        async with self._connection() as db:
            row = (
                await SQL_GET_ORDER.run(
                    db, {"client_order_id": client_order_id, "account": self.account}
                )
            ).first()
        return None if row is None else to_order(row)

    async def get_many(self, client_order_ids: Sequence[ClientOrderId]) -> dict[str, Order]:
        """The orders of these ids the ledger holds, by id: one read for a whole listing."""
        async with self._connection() as db:
            rows = await SQL_GET_ORDERS.run(
                db, {"account": self.account, "client_order_ids": list(client_order_ids)}
            )
        return {row["client_order_id"]: to_order(row) for row in rows}

    async def non_terminal(self) -> list[Order]:
        """Every order of the account that is, or may be, on the venue (oldest first)."""
        async with self._connection() as db:
            result = await SQL_NON_TERMINAL_ORDERS.run(db, {"account": self.account})
            return [to_order(row) for row in result]

    async def unresolved(self) -> list[Order]:
        """Orders whose outcome on the venue the ledger does not know (oldest first)."""
        async with self._connection() as db:
            result = await SQL_UNRESOLVED_ORDERS.run(db, {"account": self.account})
            return [to_order(row) for row in result]

    async def non_terminal_symbols(self) -> set[Symbol]:
        """The symbols with orders that are, or may be, on the venue."""
        async with self._connection() as db:
            result = await SQL_NON_TERMINAL_SYMBOLS.run(db, {"account": self.account})
            return {Symbol(row["symbol"]) for row in result}

    async def owed_fills(self, since: datetime) -> list[tuple[Order, Decimal]]:
        """Orders changed since ``since`` whose venue-reported filled quantity (kept in their
        events) exceeds the fills the ledger holds, with that quantity: their trades must be
        fetched by order."""
        async with self._connection() as db:
            result = await SQL_ORDERS_OWED_FILLS.run(db, {"account": self.account, "since": since})
            return [(to_order(row), row["venue_filled"]) for row in result]

    async def open(self, strategy_id: StrategyId | None = None) -> list[Order]:
        """Non-terminal orders, optionally of one strategy: what may still trade."""
        if strategy_id is None:
            return await self.non_terminal()
        async with self._connection() as db:
            result = await SQL_OPEN_ORDERS_OF_STRATEGY.run(
                db,
                {"account": self.account, "strategy_id": strategy_id},
            )
            return [to_order(row) for row in result]
