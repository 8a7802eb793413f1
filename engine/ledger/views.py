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

# Average cost, realized P&L and the open position's cost are path-dependent (a partial close
# realizes against the average of what is still open), so no plain aggregate gives them: this
# function folds one position's fills, in venue order, exactly as
# engine.domain.positions.apply_fill does (tests/integration/test_pnl_views.py holds the two
# together). Returns {quantity, cost_basis, realized, quote_fees, base_fees}. The only inexact
# step, the cost leaving with a partial close, is rounded to 18 places half-to-even like the
# domain's quantize; div() keeps it exact whatever numeric division's own scale would be.
POSITION_FOLD_FUNCTION = """
CREATE FUNCTION position_fold(
    sides text[], qtys numeric[], prices numeric[], fees numeric[], fee_kinds text[]
) RETURNS numeric[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    q numeric := 0;
    cost numeric := 0;
    realized numeric := 0;
    quote_fees numeric := 0;
    base_fees numeric := 0;
    signed numeric;
    closing numeric;
    removed numeric;
    scaled numeric;
    k numeric;
    twice_rest numeric;
BEGIN
    FOR i IN 1 .. COALESCE(array_length(sides, 1), 0) LOOP
        -- step 1 is the trade; step 2 the base-asset fee, given up like a sale at the price
        FOR step IN 1 .. 2 LOOP
            IF step = 1 THEN
                signed := CASE WHEN sides[i] = 'BUY' THEN qtys[i] ELSE -qtys[i] END;
            ELSIF fee_kinds[i] = 'base' AND fees[i] <> 0 THEN
                signed := -fees[i];
            ELSE
                EXIT;
            END IF;
            IF q = 0 OR sign(q) = sign(signed) THEN
                q := q + signed;
                cost := cost + signed * prices[i];
            ELSE
                closing := least(abs(signed), abs(q));
                IF closing = abs(q) THEN
                    removed := cost;
                ELSE
                    scaled := cost * closing * 1000000000000000000;
                    k := div(scaled, abs(q));
                    twice_rest := 2 * abs(scaled - k * abs(q));
                    IF twice_rest > abs(q) OR (twice_rest = abs(q) AND mod(k, 2) <> 0) THEN
                        k := k + sign(scaled);
                    END IF;
                    removed := k * 0.000000000000000001;
                END IF;
                realized := realized + sign(q) * closing * prices[i] - removed;
                q := q + signed;
                cost := cost - removed;
                IF abs(signed) > closing THEN
                    cost := q * prices[i];
                END IF;
            END IF;
        END LOOP;
        IF fee_kinds[i] = 'quote' THEN
            quote_fees := quote_fees + fees[i];
            realized := realized - fees[i];
        ELSIF fee_kinds[i] = 'base' THEN
            base_fees := base_fees + fees[i];
            realized := realized - fees[i] * prices[i];
        END IF;
    END LOOP;
    RETURN ARRAY[q, cost, realized, quote_fees, base_fees];
END;
$$
"""

# Which of the instrument's assets a fill's fee was charged in: what position_fold does with it.
_FEE_KIND = """CASE
            WHEN f.fee = 0 THEN 'none'
            WHEN f.fee_asset = i.quote_asset THEN 'quote'
            WHEN f.fee_asset = i.base_asset THEN 'base'
            ELSE 'other'
        END"""

# The fills of a group folded in venue order (the domain folds them in that order too).
FOLD_FILLS = f"""position_fold(
        array_agg(f.side ORDER BY f.venue_ts, f.id),
        array_agg(f.qty ORDER BY f.venue_ts, f.id),
        array_agg(f.price ORDER BY f.venue_ts, f.id),
        array_agg(f.fee ORDER BY f.venue_ts, f.id),
        array_agg({_FEE_KIND} ORDER BY f.venue_ts, f.id)
    )"""

# net_qty is what is held: Binance-style buy commissions are taken from the base asset received,
# so the fees whose asset is the symbol's base asset (from ``instruments``) are netted out; a
# strategy selling its net_qty then never sells more than the venue holds. avg_cost is what the
# open quantity cost per unit (NULL when flat), from the same fold as the pnl view.
POSITIONS_VIEW = f"""
CREATE VIEW positions AS
SELECT
    p.account,
    p.strategy_id,
    p.symbol,
    p.net_qty,
    p.bought_qty,
    p.sold_qty,
    p.buy_notional,
    p.sell_notional,
    p.fees,
    p.base_fees,
    p.fill_count,
    p.last_fill_at,
    p.fold[2] / NULLIF(p.fold[1], 0) AS avg_cost
FROM (
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
        max(f.venue_ts) AS last_fill_at,
        {FOLD_FILLS} AS fold
    FROM fills f
    JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    GROUP BY o.account, o.strategy_id, f.symbol
) p
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

# The latest mark of a (account, venue, symbol) row ``x``: the settlement payout once the market
# settled (a prediction-market contract is then worth its payout, 1 or 0, for good), else the
# newer of the mid the engine last recorded in ``marks`` and the account's last fill price.
_MARK = """
LEFT JOIN settlements s
    ON s.account = x.account AND s.venue = x.venue AND s.symbol = x.symbol
LEFT JOIN marks m
    ON m.account = x.account AND m.venue = x.venue AND m.symbol = x.symbol
LEFT JOIN LATERAL (
    SELECT l.price, l.venue_ts FROM fills l
    WHERE l.account = x.account AND l.symbol = x.symbol AND l.venue = x.venue
    ORDER BY l.venue_ts DESC, l.id DESC
    LIMIT 1
) lf ON true
CROSS JOIN LATERAL (
    SELECT
        CASE
            WHEN s.payout IS NOT NULL THEN s.payout
            WHEN m.price IS NOT NULL AND (lf.venue_ts IS NULL OR m.marked_at >= lf.venue_ts)
                THEN m.price
            ELSE lf.price
        END AS mark,
        CASE
            WHEN s.payout IS NOT NULL THEN 'settlement'
            WHEN m.price IS NOT NULL AND (lf.venue_ts IS NULL OR m.marked_at >= lf.venue_ts)
                THEN 'mid'
            WHEN lf.price IS NOT NULL THEN 'last_fill'
        END AS mark_source,
        CASE
            WHEN s.payout IS NOT NULL THEN s.settled_at
            WHEN m.price IS NOT NULL AND (lf.venue_ts IS NULL OR m.marked_at >= lf.venue_ts)
                THEN m.marked_at
            ELSE lf.venue_ts
        END AS marked_at
) mk"""

# Per account, strategy, venue and symbol, in the symbol's quote asset: the fold of the fills
# (position_fold), unrealized P&L at the latest mark, and fees (quote-asset fees plus base-asset
# fees valued at their fill price; fees in a third asset, e.g. BNB, are listed per asset in
# other_fees, exact decimals as text, and not netted). A settled market's position is closed at
# the payout: realized takes its value, unrealized is zero (engine.domain.positions.settle).
# Fills of symbols missing from ``instruments`` fold their fees as 'other' (quote_asset NULL).
PNL_VIEW = f"""
CREATE VIEW pnl AS
SELECT
    x.account,
    x.strategy_id,
    x.venue,
    x.symbol,
    x.quote_asset,
    CASE WHEN s.payout IS NULL THEN x.fold[1] ELSE 0 END AS position,
    CASE WHEN s.payout IS NULL THEN x.fold[2] / NULLIF(x.fold[1], 0) END AS avg_cost,
    CASE WHEN s.payout IS NULL THEN x.fold[2] ELSE 0 END AS cost_basis,
    x.fold[3] + CASE WHEN s.payout IS NULL THEN 0 ELSE x.fold[1] * s.payout - x.fold[2] END
        AS realized,
    CASE WHEN s.payout IS NULL THEN x.fold[1] * mk.mark - x.fold[2] ELSE 0 END AS unrealized,
    x.fold[3] + x.fold[1] * mk.mark - x.fold[2] AS total,
    x.fold[4] + x.base_fee_value AS fees,
    x.fold[5] AS base_fees,
    COALESCE(ot.other_fees, '{{}}'::jsonb) AS other_fees,
    mk.mark,
    mk.mark_source,
    mk.marked_at,
    s.settled_at,
    x.fill_count,
    x.last_fill_at
FROM (
    SELECT
        o.account,
        o.strategy_id,
        f.venue,
        f.symbol,
        i.quote_asset,
        {FOLD_FILLS} AS fold,
        COALESCE(sum(f.fee * f.price) FILTER (WHERE f.fee_asset = i.base_asset), 0)
            AS base_fee_value,
        count(*) AS fill_count,
        max(f.venue_ts) AS last_fill_at
    FROM fills f
    JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    GROUP BY o.account, o.strategy_id, f.venue, f.symbol, i.quote_asset
) x
LEFT JOIN LATERAL (
    SELECT jsonb_object_agg(t.fee_asset, t.total::text) AS other_fees
    FROM (
        SELECT f.fee_asset, sum(f.fee) AS total
        FROM fills f
        JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
        LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
        WHERE f.account = x.account AND o.strategy_id = x.strategy_id AND f.venue = x.venue
          AND f.symbol = x.symbol AND f.fee <> 0
          AND f.fee_asset IS DISTINCT FROM i.quote_asset
          AND f.fee_asset IS DISTINCT FROM i.base_asset
        GROUP BY f.fee_asset
    ) t
) ot ON true{_MARK}
"""

# Per account, venue and asset: the venue's newest balance report, what the ledger expects (the
# last agreeing reconcile's baseline plus what every fill since did to the asset: the rule of
# engine/ledger/balances.py) and the difference. expected is NULL before the first reconcile
# (no baseline). A report older than the newest fills shows their effect as a difference until
# the venue reports again; fills of symbols missing from ``instruments`` are not counted. A
# market settled after the baseline takes the contracts held (the base asset's baseline from
# before the settlement plus every fill since: a settled market trades no more) out of its base
# asset and pays them out in its quote asset, as ledger.balances.expected does.
CURRENT_BALANCES_VIEW = """
CREATE VIEW current_balances AS
WITH latest AS (
    SELECT DISTINCT ON (account, venue, asset)
        account, venue, asset, free, locked, venue_ts, received_at
    FROM balances
    ORDER BY account, venue, asset, received_at DESC, id DESC
),
fx AS (
    SELECT f.account, f.venue, f.id, f.side, f.qty, f.price, f.fee, f.fee_asset,
           i.base_asset, i.quote_asset
    FROM fills f JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
),
effects AS (
    SELECT account, venue, base_asset AS asset, id,
           CASE WHEN side = 'BUY' THEN qty ELSE -qty END AS delta
    FROM fx
    UNION ALL
    SELECT account, venue, quote_asset, id,
           CASE WHEN side = 'BUY' THEN -qty * price ELSE qty * price END
    FROM fx
    UNION ALL
    SELECT account, venue, fee_asset, id, -fee FROM fx WHERE fee_asset IS NOT NULL AND fee <> 0
),
held AS (
    SELECT st.account, st.venue, st.recorded_at, st.payout, i.base_asset, i.quote_asset,
           bb.total + COALESCE((
               SELECT sum(e.delta) FROM effects e
               WHERE e.account = st.account AND e.venue = st.venue AND e.asset = i.base_asset
                 AND e.id > bb.fill_id
           ), 0) AS qty
    FROM settlements st
    JOIN instruments i ON i.venue = st.venue AND i.symbol = st.symbol
    JOIN balance_baselines bb
        ON bb.account = st.account AND bb.venue = st.venue AND bb.asset = i.base_asset
       AND bb.taken_at < st.recorded_at
),
settled AS (
    SELECT account, venue, base_asset AS asset, recorded_at, -qty AS delta FROM held
    UNION ALL
    SELECT account, venue, quote_asset, recorded_at, qty * payout FROM held
),
expected AS (
    SELECT b.account, b.venue, b.asset, b.total AS baseline_total, b.taken_at AS baseline_at,
           b.total
               + COALESCE((
                   SELECT sum(e.delta) FROM effects e
                   WHERE e.account = b.account AND e.venue = b.venue AND e.asset = b.asset
                     AND e.id > b.fill_id
               ), 0)
               + COALESCE((
                   SELECT sum(t.delta) FROM settled t
                   WHERE t.account = b.account AND t.venue = b.venue AND t.asset = b.asset
                     AND t.recorded_at > b.taken_at
               ), 0) AS expected
    FROM balance_baselines b
)
SELECT
    COALESCE(l.account, x.account) AS account,
    COALESCE(l.venue, x.venue) AS venue,
    COALESCE(l.asset, x.asset) AS asset,
    l.free,
    l.locked,
    l.free + l.locked AS total,
    l.venue_ts,
    l.received_at,
    x.baseline_total,
    x.baseline_at,
    x.expected,
    l.free + l.locked - x.expected AS difference
FROM latest l
FULL JOIN expected x ON x.account = l.account AND x.venue = l.venue AND x.asset = l.asset
"""

# Per order, and so per decision (one order per decision): latencies, fill ratio, and the
# chapter's execution quality against the price at decision time (decisions.decision_price:
# the mid the strategy saw, or its target price). slippage is per unit and positive when the
# fills were worse (dearer buys, cheaper sells), for market and limit orders alike;
# slippage_cost is it times the filled quantity, in the quote asset. The implementation
# shortfall (Perold) of a decision, known once its order is terminal, is what the fills cost
# against the decision price, plus fees in the quote asset (base-asset fees at their fill price),
# plus the opportunity cost of the decided quantity left unfilled, valued at the latest mark.
EXECUTION_QUALITY_VIEW = f"""
CREATE VIEW execution_quality AS
SELECT
    x.*,
    x.slippage / NULLIF(x.decision_price, 0) * 10000 AS slippage_bps,
    x.slippage * x.filled_qty AS slippage_cost,
    mk.mark,
    oc.opportunity_cost,
    is_.implementation_shortfall,
    is_.implementation_shortfall / NULLIF(x.decided_qty * x.decision_price, 0) * 10000
        AS shortfall_bps
FROM (
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
        s.fees,
        d.decision_id,
        d.decision_price,
        d.quantity AS decided_qty,
        CASE WHEN o.side = 'BUY' THEN 1 ELSE -1 END AS side_sign,
        CASE
            WHEN d.decision_price IS NULL OR s.avg_price IS NULL THEN NULL
            WHEN o.side = 'BUY' THEN s.avg_price - d.decision_price
            ELSE d.decision_price - s.avg_price
        END AS slippage,
        fq.fees_quote,
        -- the decided quantity that will never fill: known only once the order is terminal
        CASE
            WHEN o.state IN ('FILLED', 'CANCELED', 'REJECTED', 'EXPIRED')
                THEN GREATEST(COALESCE(d.quantity, o.requested_qty) - s.filled_qty, 0)
        END AS opportunity_qty
    FROM orders o
    JOIN decisions d ON d.decision_id = o.decision_id AND d.account = o.account
    JOIN order_status s ON s.client_order_id = o.client_order_id AND s.account = o.account
    LEFT JOIN LATERAL (
        SELECT COALESCE(sum(
            CASE
                WHEN f.fee_asset = i.quote_asset THEN f.fee
                WHEN f.fee_asset = i.base_asset THEN f.fee * f.price
                ELSE 0
            END
        ), 0) AS fees_quote
        FROM fills f LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
        WHERE f.client_order_id = o.client_order_id AND f.account = o.account
    ) fq ON true
) x{_MARK}
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN x.opportunity_qty = 0 THEN 0
        ELSE x.opportunity_qty * (mk.mark - x.decision_price) * x.side_sign
    END AS opportunity_cost
) oc
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN x.decision_price IS NOT NULL
            THEN COALESCE(x.slippage * x.filled_qty, 0) + x.fees_quote + oc.opportunity_cost
    END AS implementation_shortfall
) is_
"""

# Per account and strategy: the summary `tradectl quality` prints. {where} filters the
# execution_quality rows (empty in the view: every order).
QUALITY_SUMMARY = """
SELECT
    account,
    strategy_id,
    count(*) AS orders,
    count(*) FILTER (WHERE filled_qty > 0) AS filled_orders,
    sum(filled_qty) / NULLIF(sum(requested_qty), 0) AS fill_rate,
    sum(slippage_cost) AS slippage_cost,
    sum(slippage_cost)
        / NULLIF(sum(filled_qty * decision_price) FILTER (WHERE slippage_cost IS NOT NULL), 0)
        * 10000 AS slippage_bps,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY decide_to_ack_s::float8) AS decide_to_ack_p50_s,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY decide_to_ack_s::float8) AS decide_to_ack_p95_s,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY decide_to_first_fill_s::float8)
        AS decide_to_fill_p50_s,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY decide_to_first_fill_s::float8)
        AS decide_to_fill_p95_s,
    sum(implementation_shortfall) AS implementation_shortfall,
    sum(implementation_shortfall)
        / NULLIF(
            sum(decided_qty * decision_price) FILTER (WHERE implementation_shortfall IS NOT NULL),
            0
        ) * 10000 AS shortfall_bps
FROM execution_quality
{where}
GROUP BY account, strategy_id
"""

EXECUTION_QUALITY_BY_STRATEGY_VIEW = (
    "\nCREATE VIEW execution_quality_by_strategy AS" + QUALITY_SUMMARY.format(where="")
)

#: (name, CREATE VIEW text) in creation order; drop in reverse.
VIEWS: tuple[tuple[str, str], ...] = (
    ("order_status", ORDER_STATUS_VIEW),
    ("positions", POSITIONS_VIEW),
    ("decision_trace", DECISION_TRACE_VIEW),
    ("execution_quality", EXECUTION_QUALITY_VIEW),
    ("pnl", PNL_VIEW),
    ("current_balances", CURRENT_BALANCES_VIEW),
    ("execution_quality_by_strategy", EXECUTION_QUALITY_BY_STRATEGY_VIEW),
)
