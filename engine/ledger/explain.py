"""The story of one decision, read from SQL only: ``tradectl explain``.

Everything here is a read of this account's rows: the decision (strategy, reason, the market
data it used and how old that was), every verdict, the order(s) reserved for it, their events
(state changes with causes: each submit attempt and the venue's answer is one), every fill with
its fee, slippage and latency, the order placed after it (a re-price), and the incidents (and
alerts) that mention it. The CLI renders it; ``--json`` prints it as it is here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from engine.ledger.part import LedgerPart
from engine.ledger.statements import Statement, from_json

#: The price the strategy saw when it decided, the reference for slippage. Seam: the decisions
#: table stores no such price before revision 0009 (helper E2 adds it); until then this is NULL
#: and slippage is measured against the decision's (else the order's) limit price. When the
#: column exists, make this ``d.<that column>``: the SQL below and the rendering need nothing else.
DECISION_PRICE = "CAST(NULL AS numeric)"

SQL_FIND_DECISION = Statement(
    """
    SELECT decision_id FROM orders WHERE client_order_id = :id AND account = :account
    UNION ALL
    SELECT decision_id FROM decisions WHERE decision_id = :id AND account = :account
    LIMIT 1
    """
)
SQL_DECISION = Statement(
    f"""
    SELECT d.decision_id, d.strategy_id, d.account, d.symbol, d.intent, d.side, d.quantity,
           d.limit_price, {DECISION_PRICE} AS decision_price, d.reason, d.md_ts, d.decided_at,
           EXTRACT(EPOCH FROM (d.decided_at - d.md_ts)) AS md_age_s,
           d.interval_key, d.sequence, d.outcome, d.verdicts
    FROM decisions d WHERE d.decision_id = :decision_id AND d.account = :account
    """
)
SQL_ORDERS = Statement(
    """
    SELECT o.client_order_id, o.venue, o.symbol, o.side, o.type, o.time_in_force,
           o.requested_qty, o.limit_price, o.state, o.venue_order_id, o.created_at,
           o.expires_at, o.submitted_at, o.acked_at, o.venue_ts, o.last_error, o.lease_epoch,
           o.updated_at, s.filled_qty, s.remaining_qty, s.avg_price, s.fees, s.fill_count,
           EXTRACT(EPOCH FROM (o.created_at - d.decided_at)) AS decide_to_reserve_s,
           EXTRACT(EPOCH FROM (o.submitted_at - d.decided_at)) AS decide_to_submit_s,
           EXTRACT(EPOCH FROM (o.acked_at - o.submitted_at)) AS submit_to_ack_s
    FROM orders o
    JOIN decisions d ON d.decision_id = o.decision_id AND d.account = o.account
    JOIN order_status s ON s.client_order_id = o.client_order_id AND s.account = o.account
    WHERE o.decision_id = :decision_id AND o.account = :account
    ORDER BY o.created_at, o.client_order_id
    """
)
SQL_EVENTS = Statement(
    """
    SELECT e.client_order_id, e.id, e.from_state, e.to_state, e.cause, e.detail, e.venue_ts,
           e.recorded_at
    FROM order_events e
    WHERE e.client_order_id = ANY(CAST(:client_order_ids AS text[])) AND e.account = :account
    ORDER BY e.id
    """
)
# Slippage is signed so that positive is a cost: a buy above, or a sell below, the reference.
SQL_FILLS = Statement(
    f"""
    SELECT x.client_order_id, x.trade_id, x.side, x.qty, x.price, x.fee, x.fee_asset,
           x.liquidity, x.venue_ts, x.received_at, ref.price AS reference_price, ref.basis,
           CASE WHEN x.side = 'BUY' THEN x.price - ref.price ELSE ref.price - x.price END
               AS slippage,
           CASE WHEN x.side = 'BUY' THEN x.price - ref.price ELSE ref.price - x.price END
               / NULLIF(ref.price, 0) * 10000 AS slippage_bps,
           (CASE WHEN x.side = 'BUY' THEN x.price - ref.price ELSE ref.price - x.price END)
               * x.qty AS slippage_cost,
           EXTRACT(EPOCH FROM (x.venue_ts - d.decided_at)) AS decide_to_fill_s,
           EXTRACT(EPOCH FROM (x.venue_ts - o.submitted_at)) AS submit_to_fill_s,
           EXTRACT(EPOCH FROM (x.received_at - x.venue_ts)) AS report_delay_s
    FROM fills x
    JOIN orders o ON o.client_order_id = x.client_order_id AND o.account = x.account
    JOIN decisions d ON d.decision_id = o.decision_id AND d.account = o.account
    CROSS JOIN LATERAL (
        SELECT COALESCE({DECISION_PRICE}, d.limit_price, o.limit_price) AS price,
               CASE WHEN {DECISION_PRICE} IS NOT NULL THEN 'decision price'
                    WHEN d.limit_price IS NOT NULL THEN 'decision limit price'
                    WHEN o.limit_price IS NOT NULL THEN 'order limit price' END AS basis
    ) ref
    WHERE x.client_order_id = ANY(CAST(:client_order_ids AS text[])) AND x.account = :account
    ORDER BY x.venue_ts, x.id
    """
)
# What the strategy did next on the same symbol: after a cancel, the re-priced order.
SQL_NEXT_ORDER = Statement(
    """
    SELECT o.client_order_id, o.decision_id, o.side, o.requested_qty, o.limit_price, o.state,
           o.created_at, d.reason
    FROM orders o
    JOIN decisions d ON d.decision_id = o.decision_id AND d.account = o.account
    WHERE o.account = :account AND o.strategy_id = :strategy_id AND o.symbol = :symbol
      AND (o.created_at, o.client_order_id) > (:created_at, :client_order_id)
    ORDER BY o.created_at, o.client_order_id
    LIMIT 1
    """
)
# An incident names an order in its message, dedupe key or details (``fills_missing:<id>``,
# ``{"client_order_id": ...}``): any of the ids, as a whole word (``tc-1`` is not in ``tc-10``),
# is a mention. The ids are ``[A-Za-z0-9_-]`` (:data:`ID_WORD`), so none needs regex quoting.
_MENTIONS = """
    EXISTS (
        SELECT 1 FROM unnest(CAST(:needles AS text[])) n
        WHERE ({text}) ~ ('(^|[^A-Za-z0-9_-])' || n || '([^A-Za-z0-9_-]|$)')
    )
"""
ID_WORD = re.compile(r"[A-Za-z0-9_-]+")
SQL_INCIDENTS = Statement(
    f"""
    SELECT i.id, i.opened_at, i.kind, i.scope, i.severity, i.message, i.resolved_at,
           i.resolution_note
    FROM incidents i
    WHERE i.account = :account
      AND {_MENTIONS.format(text="i.message || ' ' || i.dedupe_key || ' ' || i.details::text")}
    ORDER BY i.opened_at, i.id
    """
)
# The ``alerts`` outbox arrives with revision 0007 (helper C); read whole rows, whatever its
# columns, so this works the day it exists. Every table has an ``account`` column.
SQL_HAS_ALERTS = Statement("SELECT to_regclass('public.alerts') IS NOT NULL")
SQL_ALERTS = Statement(
    f"""
    SELECT row_to_json(a)::text AS alert FROM alerts a
    WHERE a.account = :account AND {_MENTIONS.format(text="row_to_json(a)::text")}
    """
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStory:
    """One order of the decision: its row, its events, its fills, and what came after it."""

    order: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    fills: list[dict[str, Any]] = field(default_factory=list)
    #: the strategy's next order on the symbol (after a cancel: the re-priced one)
    next_order: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Story:
    decision: dict[str, Any]
    orders: list[OrderStory] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    #: ``None`` while the ledger has no alerts table
    alerts: list[dict[str, Any]] | None = None


def _row(m: asyncpg.Record, *json_columns: str) -> dict[str, Any]:
    row = dict(m)
    for column in json_columns:
        row[column] = from_json(row[column])
    return row


class Explain(LedgerPart):
    """``ledger.explain``: everything the ledger knows about one decision."""

    async def story(self, id_: str) -> Story | None:
        """The story of the decision ``id_`` names (a client order id or a decision id) in
        this account; ``None`` when neither is known here."""
        account = {"account": self.account}
        async with (
            self._connection() as db,
            db.transaction(readonly=True, isolation="repeatable_read"),
        ):
            decision_id = (await SQL_FIND_DECISION.run(db, {**account, "id": id_})).scalar()
            if decision_id is None:
                return None
            decision = _row(
                (await SQL_DECISION.run(db, {**account, "decision_id": decision_id})).one(),
                "verdicts",
            )
            orders = await SQL_ORDERS.run(db, {**account, "decision_id": decision_id})
            coids = [o["client_order_id"] for o in orders]
            events = [
                _row(e, "detail")
                for e in await SQL_EVENTS.run(db, {**account, "client_order_ids": coids})
            ]
            fills = [
                dict(f) for f in await SQL_FILLS.run(db, {**account, "client_order_ids": coids})
            ]
            stories = []
            for o in orders:
                coid = o["client_order_id"]
                following = (
                    await SQL_NEXT_ORDER.run(
                        db,
                        {
                            **account,
                            "strategy_id": decision["strategy_id"],
                            "symbol": o["symbol"],
                            "created_at": o["created_at"],
                            "client_order_id": coid,
                        },
                    )
                ).first()
                stories.append(
                    OrderStory(
                        order=dict(o),
                        events=[e for e in events if e["client_order_id"] == coid],
                        fills=[f for f in fills if f["client_order_id"] == coid],
                        next_order=None if following is None else dict(following),
                    )
                )
            needles = [n for n in (decision_id, *coids) if ID_WORD.fullmatch(n)]
            mentions = {**account, "needles": needles}
            incidents = [dict(i) for i in await SQL_INCIDENTS.run(db, mentions)]
            alerts = None
            if (await SQL_HAS_ALERTS.run(db)).scalar():
                alerts = [from_json(a["alert"]) for a in await SQL_ALERTS.run(db, mentions)]
        return Story(decision=decision, orders=stories, incidents=incidents, alerts=alerts)
