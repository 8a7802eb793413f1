"""P&L, balances and execution quality: views, the price at decision time, marks and settlements.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py and views.py at this revision (never
import them here).

Why: the ledger had positions but no P&L that every reader agrees on (the engine's status showed
P&L at its own marks, `tradectl status` a cash flow), no view of venue balances against what
the ledger expects, and execution quality without the price the decision was made at.

Schema:

- ``decisions.decision_price`` (NUMERIC, nullable, last column,
  ``ck_decisions_decision_price_finite``): the mid of the quote the strategy saw, or its target price. Existing decisions get NULL (the
  price they were made at was never stored); their quality rows show no slippage.
- ``marks`` (account, venue, symbol) -> price, marked_at: the latest mid the engine recorded.
- ``settlements``: append-only (``settlements_append_only`` / ``settlements_no_truncate``), one
  per (account, venue, symbol): result (yes / no / void), payout per contract in [0, 1],
  settled_at, recorded_at.
- ``position_fold(...)``: folds one position's fills in venue order into quantity, cost,
  realized P&L and fees (the domain's average-cost rule).
- Views: ``positions`` gains ``avg_cost``; ``execution_quality`` gains the decision price,
  slippage (per unit, bps, cost), quote-valued fees, the mark, opportunity cost and the
  implementation shortfall; new ``pnl``, ``current_balances`` and
  ``execution_quality_by_strategy``.

Data rule: nothing is rewritten; new columns and tables start empty or NULL.

Downgrade: drops what this revision added (the recorded marks, settlements and decision prices
go with it) and restores the views of 0005 (0006 did not change them).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NUM = sa.Numeric(asdecimal=True)
TS = sa.DateTime(timezone=True)
NON_FINITE = "('NaN', 'Infinity', '-Infinity')"

# -- views at 0005 (positions from 0003, execution_quality from 0003) -----------------------------

POSITIONS_VIEW_0005 = """
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

EXECUTION_QUALITY_VIEW_0005 = """
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

# -- at 0007 ---------------------------------------------------------------------------------

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

POSITIONS_VIEW = """
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
        position_fold(
        array_agg(f.side ORDER BY f.venue_ts, f.id),
        array_agg(f.qty ORDER BY f.venue_ts, f.id),
        array_agg(f.price ORDER BY f.venue_ts, f.id),
        array_agg(f.fee ORDER BY f.venue_ts, f.id),
        array_agg(CASE
            WHEN f.fee = 0 THEN 'none'
            WHEN f.fee_asset = i.quote_asset THEN 'quote'
            WHEN f.fee_asset = i.base_asset THEN 'base'
            ELSE 'other'
        END ORDER BY f.venue_ts, f.id)
    ) AS fold
    FROM fills f
    JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    GROUP BY o.account, o.strategy_id, f.symbol
) p
"""

EXECUTION_QUALITY_VIEW = """
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
) x
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
) mk
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

PNL_VIEW = """
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
    COALESCE(ot.other_fees, '{}'::jsonb) AS other_fees,
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
        position_fold(
        array_agg(f.side ORDER BY f.venue_ts, f.id),
        array_agg(f.qty ORDER BY f.venue_ts, f.id),
        array_agg(f.price ORDER BY f.venue_ts, f.id),
        array_agg(f.fee ORDER BY f.venue_ts, f.id),
        array_agg(CASE
            WHEN f.fee = 0 THEN 'none'
            WHEN f.fee_asset = i.quote_asset THEN 'quote'
            WHEN f.fee_asset = i.base_asset THEN 'base'
            ELSE 'other'
        END ORDER BY f.venue_ts, f.id)
    ) AS fold,
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
) ot ON true
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
) mk
"""

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
           COALESCE(sum(CASE WHEN f.side = 'BUY' THEN f.qty ELSE -f.qty END), 0)
               - COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset = i.base_asset), 0) AS qty
    FROM settlements st
    JOIN instruments i ON i.venue = st.venue AND i.symbol = st.symbol
    LEFT JOIN fills f
        ON f.account = st.account AND f.venue = st.venue AND f.symbol = st.symbol
    GROUP BY st.id, st.account, st.venue, st.recorded_at, st.payout, i.base_asset, i.quote_asset
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

EXECUTION_QUALITY_BY_STRATEGY_VIEW = """
CREATE VIEW execution_quality_by_strategy AS
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

GROUP BY account, strategy_id
"""

#: created in this order, dropped in reverse
NEW_VIEWS = (
    ("positions", POSITIONS_VIEW),
    ("execution_quality", EXECUTION_QUALITY_VIEW),
    ("pnl", PNL_VIEW),
    ("current_balances", CURRENT_BALANCES_VIEW),
    ("execution_quality_by_strategy", EXECUTION_QUALITY_BY_STRATEGY_VIEW),
)
OLD_VIEWS = (("positions", POSITIONS_VIEW_0005), ("execution_quality", EXECUTION_QUALITY_VIEW_0005))
FOLD_SIGNATURE = "position_fold(text[], numeric[], numeric[], numeric[], text[])"


def _append_only(table: str) -> None:
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite()"
    )


def upgrade() -> None:
    op.add_column("decisions", sa.Column("decision_price", NUM, nullable=True))
    op.create_check_constraint(
        "ck_decisions_decision_price_finite", "decisions", f"decision_price NOT IN {NON_FINITE}"
    )
    op.create_table(
        "marks",
        sa.Column("account", sa.Text(), primary_key=True),
        sa.Column("venue", sa.Text(), primary_key=True),
        sa.Column("symbol", sa.Text(), primary_key=True),
        sa.Column("price", NUM, nullable=False),
        sa.Column("marked_at", TS, nullable=False),
        sa.CheckConstraint("price >= 0", name="ck_marks_price_non_negative"),
        sa.CheckConstraint(f"price NOT IN {NON_FINITE}", name="ck_marks_price_finite"),
    )
    op.create_table(
        "settlements",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("venue", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("payout", NUM, nullable=False),
        sa.Column("settled_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.UniqueConstraint(
            "account", "venue", "symbol", name="uq_settlements_account_venue_symbol"
        ),
        sa.CheckConstraint("result IN ('yes', 'no', 'void')", name="ck_settlements_result"),
        sa.CheckConstraint("payout >= 0 AND payout <= 1", name="ck_settlements_payout_range"),
        sa.CheckConstraint(f"payout NOT IN {NON_FINITE}", name="ck_settlements_payout_finite"),
    )
    _append_only("settlements")
    op.execute(POSITION_FOLD_FUNCTION)
    for name, _ in reversed(OLD_VIEWS):
        op.execute(f"DROP VIEW {name}")
    for _, sql in NEW_VIEWS:
        op.execute(sql)


def downgrade() -> None:
    for name, _ in reversed(NEW_VIEWS):
        op.execute(f"DROP VIEW {name}")
    for _, sql in OLD_VIEWS:
        op.execute(sql)
    op.execute(f"DROP FUNCTION {FOLD_SIGNATURE}")
    op.execute("DROP TRIGGER settlements_no_truncate ON settlements")
    op.execute("DROP TRIGGER settlements_append_only ON settlements")
    op.drop_table("settlements")
    op.drop_table("marks")
    op.drop_constraint("ck_decisions_decision_price_finite", "decisions", type_="check")
    op.drop_column("decisions", "decision_price")
