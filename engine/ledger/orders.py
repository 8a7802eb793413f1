"""Orders: reserve (:mod:`engine.ledger.reservations`), the venue's answers, transitions, and
lookups."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from engine.domain.alerts import rejected_alert
from engine.domain.orders import Order, allowed_from, target_state
from engine.domain.types import (
    UNRESOLVED,
    ClientOrderId,
    OrderState,
    StrategyId,
    Symbol,
    VenueOrderStatus,
)
from engine.exceptions import LedgerError, StateConflict
from engine.ledger.alerts import insert_alert
from engine.ledger.fence import FENCE_CTES
from engine.ledger.fills import (
    INSERT_FILLS,
    SQL_LOCK_ORDERS,
    bucket_sql,
    check_fills,
    fill_params,
    fill_totals,
    log_fill_recorded,
    report_targets,
    target_lookup,
)
from engine.ledger.listings import Listings
from engine.ledger.reservations import SQL_GET_ORDERS, Reserving
from engine.ledger.rows import FILL_TOTALS, NON_TERMINAL, ORDER_COLUMNS, SELECT_ORDERS, to_order
from engine.ledger.statements import Statement, dumps, require_finite, retry_transient
from engine.venues.base import FillReport, OrderReport

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

# One order's state change (and field updates), its event, and the resulting order: one
# statement. ``cur`` locks the row and reads its newest state; the update applies only from an
# allowed state (or the same state, to update fields without an event).
SQL_UPDATE_ORDER = Statement(
    f"""
    WITH {FENCE_CTES},
    cur AS (
        SELECT client_order_id, state FROM orders
        WHERE client_order_id = :client_order_id AND account = :account
          AND (SELECT ok FROM fence)
        FOR UPDATE
    ),
    upd AS (
        UPDATE orders o SET
            state = :to_state,
            updated_at = :now,
            venue_order_id = COALESCE(o.venue_order_id, CAST(:venue_order_id AS text)),
            submitted_at = COALESCE(CAST(:submitted_at AS timestamptz), o.submitted_at),
            acked_at = COALESCE(o.acked_at, CAST(:acked_at AS timestamptz)),
            venue_ts = GREATEST(o.venue_ts, CAST(:venue_ts AS timestamptz)),
            last_error = COALESCE(CAST(:error AS text), o.last_error)
        FROM cur
        WHERE o.client_order_id = cur.client_order_id AND o.account = :account
          AND (cur.state = ANY(CAST(:allowed AS text[])) OR cur.state = :to_state)
        RETURNING {ORDER_COLUMNS}, cur.state AS from_state
    ),
    ev AS (
        INSERT INTO order_events (account, client_order_id, from_state, to_state, cause,
                                  detail, venue_ts, recorded_at)
        SELECT u.account, u.client_order_id, u.from_state, u.state, :cause,
               CAST(:detail AS jsonb),
               CAST(:venue_ts AS timestamptz), :now
        FROM upd u WHERE u.from_state <> u.state
    )
    SELECT fence.ok AS fence_ok, cur.state AS current_state, u.*, f.filled_qty, f.avg_price
    FROM fence
    LEFT JOIN cur ON true
    LEFT JOIN upd u ON true
    LEFT JOIN LATERAL (
        SELECT sum(x.qty) AS filled_qty, sum(x.qty * x.price) / NULLIF(sum(x.qty), 0) AS avg_price
        FROM fills x WHERE x.client_order_id = :client_order_id AND x.account = :account
    ) f ON true
    """
)

# The venue's cumulative filled quantity is a fact even before its fills reach us.
_REPORT_BUCKET = bucket_sql("GREATEST(tot.filled_qty, :venue_filled)", "tot.requested_qty")


# One round trip for a venue report (ack, lookup, stream, cancel answer): lock the order, insert
# the report's fills, derive the state from the fill sum, update the order, append the event.
#
# The fill sum comes from this statement's snapshot, which may predate a concurrent writer that
# held the row lock (and inserted fills) while this statement waited for it. Every transaction
# that inserts fills of a known order also *updates* that order's row, so such a writer shows as
# a difference between the locked row version's xmin and the snapshot's: ``stale``. A stale
# result changes nothing but the fills, and the caller redoes the state in a new transaction.
def _apply_report_sql(status: VenueOrderStatus) -> str:
    return f"""
    WITH {FENCE_CTES},
    cur AS (
        SELECT o.client_order_id, o.state, o.requested_qty, o.xmin AS locked_xmin
        FROM orders o WHERE o.client_order_id = :client_order_id AND o.account = :account
          AND (SELECT ok FROM fence)
        FOR UPDATE
    ),
    snap AS (
        SELECT o.xmin AS snap_xmin FROM orders o
        WHERE o.client_order_id = :client_order_id AND o.account = :account
    ),
    ins AS ({INSERT_FILLS} RETURNING client_order_id, qty, price, trade_id),
    tot AS (
        SELECT cur.client_order_id, cur.state, cur.requested_qty,
               cur.locked_xmin IS DISTINCT FROM (SELECT snap_xmin FROM snap) AS stale,
               s.qty + COALESCE(n.qty, 0) AS filled_qty,
               s.notional + COALESCE(n.notional, 0) AS notional
        FROM cur
        CROSS JOIN (
            SELECT COALESCE(sum(x.qty), 0) AS qty, COALESCE(sum(x.qty * x.price), 0) AS notional
            FROM fills x WHERE x.client_order_id = :client_order_id AND x.account = :account
        ) s
        CROSS JOIN (SELECT sum(i.qty) AS qty, sum(i.qty * i.price) AS notional FROM ins i) n
    ),
    tgt AS (
        SELECT tot.*, lk.to_state
        FROM tot JOIN {target_lookup(report_targets(status))}
          ON lk.from_state = tot.state
         AND lk.bucket = {_REPORT_BUCKET}
    ),
    upd AS (
        UPDATE orders o SET
            state = tgt.to_state,
            updated_at = :now,
            venue_order_id = COALESCE(o.venue_order_id, CAST(:venue_order_id AS text)),
            submitted_at = COALESCE(CAST(:submitted_at AS timestamptz), o.submitted_at),
            acked_at = COALESCE(o.acked_at, CAST(:acked_at AS timestamptz)),
            venue_ts = GREATEST(o.venue_ts, CAST(:venue_ts AS timestamptz)),
            last_error = CASE WHEN tgt.to_state IN ('REJECTED', 'EXPIRED')
                              THEN COALESCE(CAST(:reason AS text), o.last_error)
                              ELSE o.last_error END
        FROM tgt
        WHERE o.client_order_id = tgt.client_order_id AND o.account = :account
          AND o.state = tgt.state AND NOT tgt.stale
        RETURNING {ORDER_COLUMNS}, tgt.state AS from_state, tgt.filled_qty, tgt.notional
    ),
    ev AS (
        INSERT INTO order_events (account, client_order_id, from_state, to_state, cause,
                                  detail, venue_ts, recorded_at)
        SELECT u.account, u.client_order_id, u.from_state, u.state, :cause,
               CAST(:detail AS jsonb),
               CAST(:venue_ts AS timestamptz), :now
        FROM upd u WHERE u.from_state <> u.state
    )
    SELECT fence.ok AS fence_ok, tgt.stale, u.*,
           u.notional / NULLIF(u.filled_qty, 0) AS avg_price,
           (SELECT array_agg(i.trade_id) FROM ins i) AS new_trade_ids
    FROM fence LEFT JOIN tgt ON true LEFT JOIN upd u ON true
    """


SQL_APPLY_REPORT = {status: Statement(_apply_report_sql(status)) for status in VenueOrderStatus}


def _log_new_fills(order: Order, fills: list[FillReport], new_trade_ids: list[str] | None) -> None:
    if new_trade_ids:
        new = set(new_trade_ids)
        for fill in fills:
            if fill.trade_id in new:
                log_fill_recorded(
                    order.account, fill, decision_id=order.decision_id, strategy=order.strategy_id
                )


def _with_coid(fill: FillReport, client_order_id: ClientOrderId) -> FillReport:
    return replace(fill, client_order_id=client_order_id)


class Orders(Reserving, Listings):
    """``ledger.orders``: an order's life from its reservation to a terminal state."""

    @retry_transient
    async def record_ack(
        self, client_order_id: ClientOrderId, report: OrderReport, *, submitted_at: datetime
    ) -> Order:
        """The venue accepted the order: attach its id and times, record any fills it carried,
        and move to the state the report implies."""
        order = await self._apply(
            client_order_id,
            report,
            cause="ack",
            submitted_at=submitted_at,
            acked_at=self._clock(),
        )
        if order is None:
            raise self._unknown(client_order_id)
        return order

    @retry_transient
    async def apply_report(self, report: OrderReport, *, cause: str) -> Order | None:
        """Apply a lookup / stream / cancel answer: append its fills, attach the venue order id
        if missing, move to the state it implies (never backwards). ``None`` when the ledger
        does not know the client order id."""
        return await self._apply(report.client_order_id, report, cause=cause)

    async def _apply(
        self,
        client_order_id: ClientOrderId,
        report: OrderReport,
        *,
        cause: str,
        submitted_at: datetime | None = None,
        acked_at: datetime | None = None,
    ) -> Order | None:
        # A NaN cumulative quantity would compare as "complete" in SQL and mark it FILLED.
        require_finite(
            f"venue report of order {client_order_id}", filled_quantity=report.filled_quantity
        )
        check_fills(report.fills)
        now = self._clock()
        fills = [
            f if f.client_order_id is not None else _with_coid(f, client_order_id)
            for f in report.fills
        ]
        detail = {
            "venue_status": report.status.value,
            "venue_filled_qty": str(report.filled_quantity),
            # kept even when the order already has one: a different id means a duplicate
            "venue_order_id": report.venue_order_id,
        }
        if report.reason:
            detail["reason"] = report.reason
        fields: dict[str, Any] = {
            "client_order_id": client_order_id,
            "now": now,
            "cause": cause,
            "detail": dumps(detail),
            "venue_order_id": report.venue_order_id,
            "submitted_at": submitted_at,
            "acked_at": acked_at,
            "venue_ts": report.venue_ts,
        }
        async with self._connection() as db:
            row = (
                await SQL_APPLY_REPORT[report.status].run(
                    db,
                    self._fenced(
                        {
                            **fields,
                            **fill_params(fills),
                            "account": self.account,
                            "venue_filled": report.filled_quantity,
                            "reason": report.reason,
                        }
                    ),
                )
            ).one()
        if not row["fence_ok"]:
            raise self._fence.refused(f"recording the venue's {cause} of order {client_order_id}")
        if row["stale"] is None:
            return None  # not ours; its fills are recorded all the same
        if not row["stale"]:
            order = to_order(row)
            _log_new_fills(order, fills, row["new_trade_ids"])
            return order
        # Another writer committed fills of this order while we waited for its lock: decide
        # the state again from sums read after taking the lock (the fills are already in).
        async with self._fenced_tx(f"recording the {cause} of order {client_order_id}") as db:
            locked = (
                await SQL_LOCK_ORDERS.run(
                    db, {"account": self.account, "client_order_ids": [client_order_id]}
                )
            ).one()
            totals = await fill_totals(db, self.account, [client_order_id])
            filled = max(totals[client_order_id], report.filled_quantity)
            current = OrderState(locked["state"])
            to = target_state(current, report.status, filled, locked["requested_qty"])
            error = report.reason if to in (OrderState.REJECTED, OrderState.EXPIRED) else None
            order = await self._update(db, to=to, error=error, **fields)
        _log_new_fills(order, fills, row["new_trade_ids"])
        return order

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

    async def _update(
        self,
        db: asyncpg.Connection,
        *,
        client_order_id: ClientOrderId,
        to: OrderState,
        now: datetime,
        cause: str,
        detail: str | None = None,
        venue_order_id: str | None = None,
        submitted_at: datetime | None = None,
        acked_at: datetime | None = None,
        venue_ts: datetime | None = None,
        error: str | None = None,
    ) -> Order:
        return to_order(
            await self._update_row(
                db,
                client_order_id=client_order_id,
                to=to,
                now=now,
                cause=cause,
                detail=detail,
                venue_order_id=venue_order_id,
                submitted_at=submitted_at,
                acked_at=acked_at,
                venue_ts=venue_ts,
                error=error,
            )
        )

    async def _update_row(
        self,
        db: asyncpg.Connection,
        *,
        client_order_id: ClientOrderId,
        to: OrderState,
        now: datetime,
        cause: str,
        detail: str | None = None,
        venue_order_id: str | None = None,
        submitted_at: datetime | None = None,
        acked_at: datetime | None = None,
        venue_ts: datetime | None = None,
        error: str | None = None,
    ) -> asyncpg.Record:
        """The updated order row (with ``from_state``), or StateConflict."""
        row = (
            await SQL_UPDATE_ORDER.run(
                db,
                self._fenced(
                    {
                        "client_order_id": client_order_id,
                        "account": self.account,
                        "to_state": to.value,
                        "allowed": [s.value for s in allowed_from(to)],
                        "now": now,
                        "cause": cause,
                        "detail": detail,
                        "venue_order_id": venue_order_id,
                        "submitted_at": submitted_at,
                        "acked_at": acked_at,
                        "venue_ts": venue_ts,
                        "error": error,
                    }
                ),
            )
        ).one()
        if not row["fence_ok"]:
            raise self._fence.refused(f"moving order {client_order_id} to {to.value} ({cause})")
        if row["current_state"] is None:
            raise self._unknown(client_order_id)
        if row["client_order_id"] is None:
            raise StateConflict(
                f"order {client_order_id} is {row['current_state']}, which cannot move to "
                f"{to.value} ({cause}); re-read it and act on its current state"
            )
        return row

    def _unknown(self, client_order_id: str) -> LedgerError:
        return LedgerError(
            f"order {client_order_id} is not in the ledger of account {self.account}; only "
            "reserved client order ids can change state"
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
