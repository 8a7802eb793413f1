"""The venue's answers to orders (ACKs, lookups, stream and cancel reports) and state changes:
the part of :class:`engine.ledger.orders.Orders` that derives an order's state from the report
and the sum of its fills.

ACKs of orders completing together are written by :meth:`Reporting.record_acks` in one
transaction (group commit, see :mod:`engine.execution.group_commit`): one WAL flush for the
batch instead of one per order, each statement the same as a single report's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from engine.domain.orders import Order, allowed_from, target_state
from engine.domain.types import ClientOrderId, OrderState, VenueOrderStatus
from engine.exceptions import LedgerError, StateConflict
from engine.ledger.db import is_connection_error
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
from engine.ledger.part import LedgerPart
from engine.ledger.report_batch import SQL_APPLY_REPORTS, report_params
from engine.ledger.rows import ORDER_COLUMNS, to_order
from engine.ledger.statements import Statement, dumps, require_finite, retry_transient
from engine.venues.base import FillReport, OrderReport

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


@dataclass(frozen=True, slots=True)
class Ack:
    """One venue acceptance to record: the order, the venue's report, when it was sent."""

    client_order_id: ClientOrderId
    report: OrderReport
    submitted_at: datetime


@dataclass(slots=True)
class Prepared:
    client_order_id: ClientOrderId
    report: OrderReport
    fills: list[FillReport]
    fields: dict[str, Any]


class Reporting(LedgerPart):
    """Venue reports and state transitions of one account's orders."""

    @retry_transient
    async def record_ack(
        self, client_order_id: ClientOrderId, report: OrderReport, *, submitted_at: datetime
    ) -> Order:
        """The venue accepted the order: attach its id and times, record any fills it carried,
        and move to the state the report implies."""
        prepared = self._prepare(
            client_order_id, report, cause="ack", submitted_at=submitted_at, acked_at=self._clock()
        )
        async with self._connection() as db:
            order = await self._apply_on(db, prepared, in_tx=False)
        if order is None:
            raise self._unknown(client_order_id)
        return order

    async def record_acks(self, acks: Sequence[Ack]) -> list[Order | Exception]:
        """Several ACKs in one transaction (one commit); per ACK the order or the error that
        kept it from being recorded. Each is the same statement as :meth:`record_ack`, in
        client order id order (two batches lock their orders in the same order: no deadlock).
        A report the ledger refuses fails alone: the batch is then written one by one."""
        results: list[Order | Exception] = [LedgerError("not written")] * len(acks)
        prepared: list[tuple[int, Prepared]] = []
        acked_at = self._clock()
        for i, ack in enumerate(acks):
            try:
                prepared.append(
                    (
                        i,
                        self._prepare(
                            ack.client_order_id,
                            ack.report,
                            cause="ack",
                            submitted_at=ack.submitted_at,
                            acked_at=acked_at,
                        ),
                    )
                )
            except LedgerError as exc:
                results[i] = exc
        prepared.sort(key=lambda item: item[1].client_order_id)
        try:
            orders = await self._apply_batch([p for _, p in prepared])
        except Exception as exc:
            if is_connection_error(exc) or len(prepared) == 1:
                raise
            # One statement was refused (a constraint, say): write each alone, so only the
            # ACK at fault fails and the others are durable.
            for i, p in prepared:
                try:
                    results[i] = await self.record_ack(
                        p.client_order_id, p.report, submitted_at=p.fields["submitted_at"]
                    )
                except Exception as one:
                    if is_connection_error(one):
                        raise
                    results[i] = one
            return results
        for (i, p), order in zip(prepared, orders, strict=True):
            results[i] = order if order is not None else self._unknown(p.client_order_id)
        return results

    @retry_transient
    async def _apply_batch(self, prepared: Sequence[Prepared]) -> list[Order | None]:
        """One transaction: a statement per report status in the batch (an ACK batch is
        mostly one status), the same order's reports one by one."""
        if not prepared:
            return []
        by_status: dict[VenueOrderStatus, list[Prepared]] = {}
        for p in prepared:
            by_status.setdefault(p.report.status, []).append(p)
        found: dict[str, Order | None] = {}
        # The fence is checked (and the lease row locked) first: every statement of the batch
        # is then covered until the commit.
        async with self._fenced_tx(f"recording {len(prepared)} acknowledgements") as db:
            if len({p.client_order_id for p in prepared}) < len(prepared):
                return [await self._apply_on(db, p, in_tx=True) for p in prepared]
            for status, group in by_status.items():
                found.update(await self._apply_group(db, status, group))
        return [found.get(p.client_order_id) for p in prepared]

    async def _apply_group(
        self, db: asyncpg.Connection, status: VenueOrderStatus, group: Sequence[Prepared]
    ) -> dict[str, Order | None]:
        rows = await SQL_APPLY_REPORTS[status].run(
            db,
            self._fenced(
                {
                    **report_params(group),
                    **fill_params([f for p in group for f in p.fills]),
                    "account": self.account,
                    "now": group[0].fields["now"],
                    "cause": group[0].fields["cause"],
                }
            ),
        )
        by_id = {p.client_order_id: p for p in group}
        found: dict[str, Order | None] = {}
        for row in rows:
            p = by_id[row["report_id"]]
            if row["stale"]:
                order = await self._redo_state(db, p)
            elif row["client_order_id"] is None:
                continue  # no transition from its state: as the one-report statement, unknown
            else:
                order = to_order(row)
            _log_new_fills(order, p.fills, row["new_trade_ids"])
            found[p.client_order_id] = order
        return found

    @retry_transient
    async def apply_report(self, report: OrderReport, *, cause: str) -> Order | None:
        """Apply a lookup / stream / cancel answer: append its fills, attach the venue order id
        if missing, move to the state it implies (never backwards). ``None`` when the ledger
        does not know the client order id."""
        prepared = self._prepare(report.client_order_id, report, cause=cause)
        async with self._connection() as db:
            return await self._apply_on(db, prepared, in_tx=False)

    def _prepare(
        self,
        client_order_id: ClientOrderId,
        report: OrderReport,
        *,
        cause: str,
        submitted_at: datetime | None = None,
        acked_at: datetime | None = None,
    ) -> Prepared:
        # A NaN cumulative quantity would compare as "complete" in SQL and mark it FILLED.
        require_finite(
            f"venue report of order {client_order_id}", filled_quantity=report.filled_quantity
        )
        check_fills(report.fills)
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
            "now": self._clock(),
            "cause": cause,
            "detail": dumps(detail),
            "venue_order_id": report.venue_order_id,
            "submitted_at": submitted_at,
            "acked_at": acked_at,
            "venue_ts": report.venue_ts,
        }
        return Prepared(client_order_id, report, fills, fields)

    async def _apply_on(self, db: asyncpg.Connection, p: Prepared, *, in_tx: bool) -> Order | None:
        report = p.report
        row = (
            await SQL_APPLY_REPORT[report.status].run(
                db,
                self._fenced(
                    {
                        **p.fields,
                        **fill_params(p.fills),
                        "account": self.account,
                        "venue_filled": report.filled_quantity,
                        "reason": report.reason,
                    }
                ),
            )
        ).one()
        if not row["fence_ok"]:
            raise self._fence.refused(
                f"recording the venue's {p.fields['cause']} of order {p.client_order_id}"
            )
        if row["stale"] is None:
            return None  # not ours; its fills are recorded all the same
        if not row["stale"]:
            order = to_order(row)
            _log_new_fills(order, p.fills, row["new_trade_ids"])
            return order
        # Another writer committed fills of this order while we waited for its lock: decide
        # the state again from sums read after taking the lock (the fills are already in). In
        # a batch transaction this one holds the lock already, and a new statement's snapshot
        # sees what that writer committed.
        if in_tx:
            order = await self._redo_state(db, p)
        else:
            what = f"recording the {p.fields['cause']} of order {p.client_order_id}"
            async with self._fenced_tx(what) as tx:
                order = await self._redo_state(tx, p)
        _log_new_fills(order, p.fills, row["new_trade_ids"])
        return order

    async def _redo_state(self, db: asyncpg.Connection, p: Prepared) -> Order:
        coid, report = p.client_order_id, p.report
        locked = (
            await SQL_LOCK_ORDERS.run(db, {"account": self.account, "client_order_ids": [coid]})
        ).one()
        totals = await fill_totals(db, self.account, [coid])
        filled = max(totals[coid], report.filled_quantity)
        current = OrderState(locked["state"])
        to = target_state(current, report.status, filled, locked["requested_qty"])
        error = report.reason if to in (OrderState.REJECTED, OrderState.EXPIRED) else None
        return await self._update(db, to=to, error=error, **p.fields)

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
