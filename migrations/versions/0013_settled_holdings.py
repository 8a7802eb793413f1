"""The current_balances view counts what a settled market's contracts were from the base asset's
baseline, like ledger.balances.expected.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/views.py at this revision (never import it here).

Why: the view took a settled market's holding to be the sum of the account's fills in it, so
contracts held before tradectl traded (the Kalshi simulator starts with some; a real account may
too) stayed expected after the settlement, and the view showed a difference where the engine's
balance check (engine/ledger/balances.py) saw none. The holding is now the base asset's baseline,
taken before the settlement was recorded, plus every fill since: the balance check's rule.

Only the view changes; downgrade restores the view of 0007.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_BALANCES_VIEW_0007 = """CREATE VIEW current_balances AS
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

CURRENT_BALANCES_VIEW = """CREATE VIEW current_balances AS
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


def upgrade() -> None:
    op.execute("DROP VIEW current_balances")
    op.execute(CURRENT_BALANCES_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW current_balances")
    op.execute(CURRENT_BALANCES_VIEW_0007)
