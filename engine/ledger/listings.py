"""A venue's listing of many orders applied in one transaction (bulk recovery).

Startup after a crash can find thousands of orders whose outcome the ledger does not know; one
lookup and one transaction each takes minutes and more request weight than the venue allows.
A listing (Binance ``allOrders``) answers for all of them at once, and this applies it: lock the
orders, read their fill sums, derive each one's state with the same rule a single report uses
(:func:`engine.domain.orders.target_state`), then one update and one event insert for the lot.

A listing carries no fills (``allOrders`` rows are order aggregates): a report saying more is
filled than the ledger holds fills for moves the state as any lookup would, and the caller
fetches the fills by trade id afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from engine.domain.orders import Order, target_state
from engine.domain.types import OrderState
from engine.ledger.fills import SQL_LOCK_ORDERS, fill_totals
from engine.ledger.part import LedgerPart
from engine.ledger.reservations import SQL_GET_ORDERS
from engine.ledger.rows import to_order
from engine.ledger.statements import Statement, dumps, require_finite, retry_transient
from engine.venues.base import OrderReport

# Rows were locked (FOR UPDATE) earlier in the same transaction, so ``from_state`` is the state
# each order is in; the event is appended only where the state changes, as for one report.
SQL_APPLY_LISTED = Statement(
    """
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:client_order_ids AS text[]), CAST(:from_states AS text[]),
            CAST(:to_states AS text[]), CAST(:venue_order_ids AS text[]),
            CAST(:venue_ts AS timestamptz[]), CAST(:errors AS text[]), CAST(:details AS text[])
        ) AS v(client_order_id, from_state, to_state, venue_order_id, venue_ts, error, detail)
    ),
    upd AS (
        UPDATE orders o SET
            state = v.to_state,
            updated_at = :now,
            venue_order_id = COALESCE(o.venue_order_id, v.venue_order_id),
            venue_ts = GREATEST(o.venue_ts, v.venue_ts),
            last_error = COALESCE(v.error, o.last_error)
        FROM v
        WHERE o.client_order_id = v.client_order_id AND o.account = :account
          AND o.state = v.from_state
        RETURNING o.client_order_id, v.from_state, v.to_state, v.detail, v.venue_ts
    )
    INSERT INTO order_events (account, client_order_id, from_state, to_state, cause, detail,
                              venue_ts, recorded_at)
    SELECT :account, u.client_order_id, u.from_state, u.to_state, :cause,
           CAST(u.detail AS jsonb), u.venue_ts, :now
    FROM upd u WHERE u.from_state <> u.to_state
    """
)


class Listings(LedgerPart):
    """Mixed into ``ledger.orders``: many lookup answers in one transaction."""

    @retry_transient
    async def apply_listed(self, reports: Sequence[OrderReport], *, cause: str) -> list[Order]:
        """Apply lookup answers without fills (a venue's order listing) to the orders they name;
        return those orders as they are now (orders the ledger does not know are skipped)."""
        if not reports:
            return []
        by_id: dict[str, OrderReport] = {}
        for report in reports:
            if report.fills:
                raise ValueError("apply_listed takes order listings, which carry no fills")
            # A NaN cumulative quantity would compare as "complete" and mark an order FILLED.
            require_finite(
                f"venue report of order {report.client_order_id}",
                filled_quantity=report.filled_quantity,
            )
            by_id[report.client_order_id] = report
        ids = sorted(by_id)
        rows: dict[str, list[Any]] = {
            key: []
            for key in (
                "client_order_ids",
                "from_states",
                "to_states",
                "venue_order_ids",
                "venue_ts",
                "errors",
                "details",
            )
        }
        async with self._fenced_tx(f"resolving {len(ids)} order(s) from a listing") as db:
            locked = await SQL_LOCK_ORDERS.run(
                db, {"account": self.account, "client_order_ids": ids}
            )
            totals = await fill_totals(db, self.account, ids)
            for row in locked:
                coid = row["client_order_id"]
                report = by_id[coid]
                current = OrderState(row["state"])
                filled = max(totals.get(coid, Decimal(0)), report.filled_quantity)
                to = target_state(current, report.status, filled, row["requested_qty"])
                detail = {
                    "venue_status": report.status.value,
                    "venue_filled_qty": str(report.filled_quantity),
                    "venue_order_id": report.venue_order_id,
                }
                if report.reason:
                    detail["reason"] = report.reason
                rows["client_order_ids"].append(coid)
                rows["from_states"].append(current.value)
                rows["to_states"].append(to.value)
                rows["venue_order_ids"].append(report.venue_order_id)
                rows["venue_ts"].append(report.venue_ts)
                rows["errors"].append(
                    report.reason if to in (OrderState.REJECTED, OrderState.EXPIRED) else None
                )
                rows["details"].append(dumps(detail))
            await SQL_APPLY_LISTED.run(
                db, {**rows, "account": self.account, "cause": cause, "now": self._clock()}
            )
            result = await SQL_GET_ORDERS.run(
                db, {"account": self.account, "client_order_ids": rows["client_order_ids"]}
            )
        return [to_order(r) for r in result]
