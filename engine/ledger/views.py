"""The ledger's views, as SQL text: part of the schema.

:mod:`engine.ledger.schema` creates them after the tables and stays the single source that
alembic and ``tests/migrations`` compare with; the views live here only to keep that module
readable. Migrations keep their own frozen copies (never import this module from one).
"""

from __future__ import annotations

# Everything derived (filled quantity, average price, positions) comes from fills, never
# from a stored counter that could drift. Order matters: later views may use earlier ones.
# Every join between fills, orders and decisions matches the account too: an identifier (a
# trade id, a client order id derived from a decision key) may recur in another account, and
# no row may mix two accounts.

ORDER_STATUS_VIEW = """
CREATE VIEW order_status AS
SELECT
    o.client_order_id,
    o.decision_id,
    o.strategy_id,
    o.account,
    o.venue,
    o.symbol,
    o.side,
    o.type,
    o.state,
    o.requested_qty,
    o.limit_price,
    COALESCE(f.filled_qty, 0) AS filled_qty,
    o.requested_qty - COALESCE(f.filled_qty, 0) AS remaining_qty,
    f.avg_price,
    COALESCE(f.fees, 0) AS fees,
    COALESCE(f.fill_count, 0) AS fill_count,
    f.first_fill_at,
    f.last_fill_at
FROM orders o
LEFT JOIN LATERAL (
    SELECT
        sum(x.qty) AS filled_qty,
        sum(x.qty * x.price) / NULLIF(sum(x.qty), 0) AS avg_price,
        sum(x.fee) AS fees,
        count(*) AS fill_count,
        min(x.venue_ts) AS first_fill_at,
        max(x.venue_ts) AS last_fill_at
    FROM fills x
    WHERE x.client_order_id = o.client_order_id AND x.account = o.account
) f ON true
"""

# net_qty is what is held: Binance-style buy commissions are taken from the base asset received,
# so the fees whose asset is the symbol's base asset (from ``instruments``) are netted out; a
# strategy selling its net_qty then never sells more than the venue holds.
POSITIONS_VIEW = """
CREATE VIEW positions AS
SELECT
    o.account,
    o.strategy_id,
    f.symbol,
    sum(CASE WHEN f.side = 'BUY' THEN f.qty ELSE -f.qty END)
        - COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset = i.base_asset), 0) AS net_qty,
    COALESCE(sum(f.qty) FILTER (WHERE f.side = 'BUY'), 0) AS bought_qty,
    COALESCE(sum(f.qty) FILTER (WHERE f.side = 'SELL'), 0) AS sold_qty,
    COALESCE(sum(f.qty * f.price) FILTER (WHERE f.side = 'BUY'), 0) AS buy_notional,
    COALESCE(sum(f.qty * f.price) FILTER (WHERE f.side = 'SELL'), 0) AS sell_notional,
    sum(f.fee) AS fees,
    COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset = i.base_asset), 0) AS base_fees,
    count(*) AS fill_count,
    max(f.venue_ts) AS last_fill_at
FROM fills f
JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
GROUP BY o.account, o.strategy_id, f.symbol
"""

# "For any order, one query on decision_trace shows the decision, its reason and md time, every
# verdict, the order's events and its fills." Quantities inside the JSON are text: exact decimals.
DECISION_TRACE_VIEW = """
CREATE VIEW decision_trace AS
SELECT
    d.decision_id,
    d.strategy_id,
    d.account,
    d.symbol,
    d.intent,
    d.side,
    d.quantity,
    d.limit_price,
    d.reason,
    d.md_ts,
    d.decided_at,
    d.interval_key,
    d.sequence,
    d.outcome,
    d.verdicts,
    o.client_order_id,
    o.venue,
    o.type AS order_type,
    o.time_in_force,
    o.requested_qty,
    o.limit_price AS order_limit_price,
    o.state,
    o.venue_order_id,
    o.created_at,
    o.expires_at,
    o.submitted_at,
    o.acked_at,
    o.venue_ts,
    o.last_error,
    o.lease_epoch,
    COALESCE(ev.events, '[]'::jsonb) AS events,
    COALESCE(fl.fills, '[]'::jsonb) AS fills
FROM decisions d
LEFT JOIN orders o ON o.decision_id = d.decision_id AND o.account = d.account
LEFT JOIN LATERAL (
    SELECT jsonb_agg(
        jsonb_build_object(
            'id', e.id,
            'from_state', e.from_state,
            'to_state', e.to_state,
            'cause', e.cause,
            'detail', e.detail,
            'venue_ts', e.venue_ts,
            'recorded_at', e.recorded_at
        )
        ORDER BY e.id
    ) AS events
    FROM order_events e
    WHERE e.client_order_id = o.client_order_id AND e.account = o.account
) ev ON true
LEFT JOIN LATERAL (
    SELECT jsonb_agg(
        jsonb_build_object(
            'trade_id', x.trade_id,
            'side', x.side,
            'qty', x.qty::text,
            'price', x.price::text,
            'fee', x.fee::text,
            'fee_asset', x.fee_asset,
            'liquidity', x.liquidity,
            'venue_ts', x.venue_ts,
            'received_at', x.received_at
        )
        ORDER BY x.venue_ts, x.id
    ) AS fills
    FROM fills x
    WHERE x.client_order_id = o.client_order_id AND x.account = o.account
) fl ON true
"""

EXECUTION_QUALITY_VIEW = """
CREATE VIEW execution_quality AS
SELECT
    o.client_order_id,
    o.strategy_id,
    o.account,
    o.venue,
    o.symbol,
    o.side,
    o.type,
    o.state,
    d.md_ts,
    d.decided_at,
    o.submitted_at,
    o.acked_at,
    s.first_fill_at,
    EXTRACT(EPOCH FROM (d.decided_at - d.md_ts)) AS md_age_s,
    EXTRACT(EPOCH FROM (o.submitted_at - d.decided_at)) AS decide_to_submit_s,
    EXTRACT(EPOCH FROM (o.acked_at - o.submitted_at)) AS submit_to_ack_s,
    EXTRACT(EPOCH FROM (o.acked_at - d.decided_at)) AS decide_to_ack_s,
    EXTRACT(EPOCH FROM (s.first_fill_at - d.decided_at)) AS decide_to_first_fill_s,
    o.limit_price,
    s.avg_price,
    -- positive when the fills were better than the limit (cheaper buys, dearer sells)
    CASE
        WHEN o.limit_price IS NULL OR s.avg_price IS NULL THEN NULL
        WHEN o.side = 'BUY' THEN o.limit_price - s.avg_price
        ELSE s.avg_price - o.limit_price
    END AS price_improvement,
    o.requested_qty,
    s.filled_qty,
    s.filled_qty / o.requested_qty AS fill_ratio,
    s.fees
FROM orders o
JOIN decisions d ON d.decision_id = o.decision_id AND d.account = o.account
JOIN order_status s ON s.client_order_id = o.client_order_id AND s.account = o.account
"""

#: (name, CREATE VIEW text) in creation order; drop in reverse.
VIEWS: tuple[tuple[str, str], ...] = (
    ("order_status", ORDER_STATUS_VIEW),
    ("positions", POSITIONS_VIEW),
    ("decision_trace", DECISION_TRACE_VIEW),
    ("execution_quality", EXECUTION_QUALITY_VIEW),
)
