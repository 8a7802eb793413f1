"""Several venue reports of the same status in one statement: the set form of
``SQL_APPLY_REPORT`` (:mod:`engine.ledger.reports`), for ACKs committed as a group.

Per report, exactly what the one-report statement does: lock the order, insert its fills, derive
the state from the fill sum (and the venue's cumulative quantity) through the transition table,
update the order, append its event; a ``stale`` row (a writer committed fills of the order
while this statement waited for its lock) changes nothing but the fills, and the caller
derives its state again in the same transaction. The orders are locked in client order id
order, as every multi-order write does, so two batches cannot deadlock. Fenced like every write
of the execution path (engine/ledger/fence.py): the caller's transaction checks the lease epoch
first, and the statement carries the fence too (its fill insert is conditioned on it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.domain.types import VenueOrderStatus
from engine.ledger.fence import FENCE_CTES
from engine.ledger.fills import INSERT_FILLS, bucket_sql, report_targets, target_lookup
from engine.ledger.rows import ORDER_COLUMNS
from engine.ledger.statements import Statement, dumps_rows, json_instant


def _apply_reports_sql(status: VenueOrderStatus) -> str:
    return f"""
    WITH {FENCE_CTES},
    -- the reports' rows; their ids, as ARRAY(SELECT client_order_id FROM r) (an InitPlan
    -- computed once), stay an index condition of the scans below
    r AS (
        SELECT * FROM json_to_recordset(CAST(:reports AS json)) AS r(
            client_order_id text, venue_filled numeric, venue_order_id text,
            submitted_at timestamptz, acked_at timestamptz, venue_ts timestamptz, detail text,
            reason text
        )
    ),
    cur AS (
        SELECT o.client_order_id, o.state, o.requested_qty, o.xmin AS locked_xmin
        FROM orders o
        WHERE o.client_order_id = ANY(ARRAY(SELECT client_order_id FROM r))
          AND o.account = :account AND (SELECT ok FROM fence)
        ORDER BY o.client_order_id
        FOR UPDATE
    ),
    -- MATERIALIZED: inlined, the planner re-ran this scan once per order of the batch
    snap AS MATERIALIZED (
        SELECT o.client_order_id, o.xmin AS snap_xmin FROM orders o
        WHERE o.client_order_id = ANY(ARRAY(SELECT client_order_id FROM r))
          AND o.account = :account
    ),
    ins AS ({INSERT_FILLS} RETURNING client_order_id, qty, price, trade_id),
    n AS (
        SELECT client_order_id, sum(qty) AS qty, sum(qty * price) AS notional,
               array_agg(trade_id) AS trade_ids
        FROM ins GROUP BY client_order_id
    ),
    -- The batch's earlier fills, one grouped scan keyed by client order id. A LATERAL sum per
    -- order let a generic plan built while the table was small scan every fill of the account
    -- per order (through the account-first unique index), quadratic until the first ANALYZE.
    prior AS (
        SELECT x.client_order_id, sum(x.qty) AS qty, sum(x.qty * x.price) AS notional
        FROM fills x
        WHERE x.client_order_id = ANY(ARRAY(SELECT client_order_id FROM r))
          AND x.account = :account
        GROUP BY x.client_order_id
    ),
    tot AS (
        SELECT cur.client_order_id, cur.state, cur.requested_qty, r.venue_filled,
               cur.locked_xmin IS DISTINCT FROM s.snap_xmin AS stale,
               COALESCE(p.qty, 0) + COALESCE(n.qty, 0) AS filled_qty,
               COALESCE(p.notional, 0) + COALESCE(n.notional, 0) AS notional,
               n.trade_ids
        FROM cur
        JOIN r ON r.client_order_id = cur.client_order_id
        LEFT JOIN snap s ON s.client_order_id = cur.client_order_id
        LEFT JOIN n ON n.client_order_id = cur.client_order_id
        LEFT JOIN prior p ON p.client_order_id = cur.client_order_id
    ),
    tgt AS (
        SELECT tot.*, lk.to_state
        FROM tot JOIN {target_lookup(report_targets(status))}
          ON lk.from_state = tot.state
         AND lk.bucket = {
        bucket_sql("GREATEST(tot.filled_qty, tot.venue_filled)", "tot.requested_qty")
    }
    ),
    upd AS (
        UPDATE orders o SET
            state = tgt.to_state,
            updated_at = :now,
            venue_order_id = COALESCE(o.venue_order_id, r.venue_order_id),
            submitted_at = COALESCE(r.submitted_at, o.submitted_at),
            acked_at = COALESCE(o.acked_at, r.acked_at),
            venue_ts = GREATEST(o.venue_ts, r.venue_ts),
            last_error = CASE WHEN tgt.to_state IN ('REJECTED', 'EXPIRED')
                              THEN COALESCE(r.reason, o.last_error)
                              ELSE o.last_error END
        FROM tgt JOIN r ON r.client_order_id = tgt.client_order_id
        WHERE o.client_order_id = tgt.client_order_id AND o.account = :account
          AND o.state = tgt.state AND NOT tgt.stale
        RETURNING {ORDER_COLUMNS}, tgt.state AS from_state, tgt.filled_qty, tgt.notional,
                  r.detail AS ev_detail, r.venue_ts AS ev_venue_ts
    ),
    ev AS (
        INSERT INTO order_events (account, client_order_id, from_state, to_state, cause,
                                  detail, venue_ts, recorded_at)
        SELECT u.account, u.client_order_id, u.from_state, u.state, :cause,
               CAST(u.ev_detail AS jsonb), u.ev_venue_ts, :now
        FROM upd u WHERE u.from_state <> u.state
        ORDER BY u.client_order_id
    )
    SELECT tgt.client_order_id AS report_id, tgt.stale, u.*,
           u.notional / NULLIF(u.filled_qty, 0) AS avg_price, tgt.trade_ids AS new_trade_ids
    FROM tgt LEFT JOIN upd u ON u.client_order_id = tgt.client_order_id
    """


SQL_APPLY_REPORTS = {status: Statement(_apply_reports_sql(status)) for status in VenueOrderStatus}


def report_params(prepared: Sequence[Any]) -> dict[str, str]:
    """The ``:reports`` parameter of :data:`SQL_APPLY_REPORTS` (``prepared``: reports.Prepared):
    one JSON array of rows, values converted as the fills' (engine/ledger/fills.py, fill_row)."""
    return {"reports": dumps_rows([_report_row(p) for p in prepared])}


def _report_row(p: Any) -> dict[str, Any]:
    report, fields = p.report, p.fields
    return {
        "client_order_id": p.client_order_id,
        "venue_filled": str(report.filled_quantity),
        "venue_order_id": report.venue_order_id,
        "submitted_at": json_instant(fields["submitted_at"]),
        "acked_at": json_instant(fields["acked_at"]),
        "venue_ts": json_instant(report.venue_ts),
        "detail": fields["detail"],
        "reason": report.reason,
    }
