"""Ledger foundation: decisions, orders, order events, fills, controls, incidents, leases,
balances; the order_status / positions / decision_trace / execution_quality views; append-only
triggers on fills and order_events.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Hand-written. The tables are a frozen copy of engine/ledger/schema.py at this revision (never
import it here: a later change to schema.py must not rewrite history); tests/migrations proves
the result matches schema.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
NUM = sa.Numeric(asdecimal=True)

ORDER_STATES = (
    "'PENDING_SUBMIT', 'UNKNOWN', 'OPEN', 'PARTIALLY_FILLED', 'PENDING_CANCEL', "
    "'FILLED', 'CANCELED', 'REJECTED', 'EXPIRED'"
)
NON_TERMINAL = "'PENDING_SUBMIT', 'UNKNOWN', 'OPEN', 'PARTIALLY_FILLED', 'PENDING_CANCEL'"

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
    WHERE x.client_order_id = o.client_order_id
) f ON true
"""

POSITIONS_VIEW = """
CREATE VIEW positions AS
SELECT
    o.account,
    o.strategy_id,
    f.symbol,
    sum(CASE WHEN f.side = 'BUY' THEN f.qty ELSE -f.qty END) AS net_qty,
    COALESCE(sum(f.qty) FILTER (WHERE f.side = 'BUY'), 0) AS bought_qty,
    COALESCE(sum(f.qty) FILTER (WHERE f.side = 'SELL'), 0) AS sold_qty,
    COALESCE(sum(f.qty * f.price) FILTER (WHERE f.side = 'BUY'), 0) AS buy_notional,
    COALESCE(sum(f.qty * f.price) FILTER (WHERE f.side = 'SELL'), 0) AS sell_notional,
    sum(f.fee) AS fees,
    count(*) AS fill_count,
    max(f.venue_ts) AS last_fill_at
FROM fills f
JOIN orders o ON o.client_order_id = f.client_order_id
GROUP BY o.account, o.strategy_id, f.symbol
"""

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
LEFT JOIN orders o ON o.decision_id = d.decision_id
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
    WHERE e.client_order_id = o.client_order_id
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
    WHERE x.client_order_id = o.client_order_id
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
JOIN decisions d ON d.decision_id = o.decision_id
JOIN order_status s ON s.client_order_id = o.client_order_id
"""

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION ledger_refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'fills and order_events are facts; record a correction as a new row '
                     '(or an incident) instead of rewriting history';
END;
$$
"""


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.Text(), primary_key=True),
        sa.Column("strategy_id", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("intent", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=True),
        sa.Column("quantity", NUM, nullable=True),
        sa.Column("limit_price", NUM, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("md_ts", TS, nullable=False),
        sa.Column("decided_at", TS, nullable=False),
        sa.Column("interval_key", sa.Text(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("verdicts", postgresql.JSONB(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "intent IN ('buy', 'sell', 'cancel', 'hold')", name="ck_decisions_intent"
        ),
        sa.CheckConstraint("side IS NULL OR side IN ('BUY', 'SELL')", name="ck_decisions_side"),
        sa.CheckConstraint(
            "outcome IN ('reserved', 'denied', 'hold')", name="ck_decisions_outcome"
        ),
    )
    op.create_index("ix_decisions_account_decided_at", "decisions", ["account", "decided_at"])
    op.create_index(
        "ix_decisions_strategy_id_decided_at", "decisions", ["strategy_id", "decided_at"]
    )

    op.create_table(
        "orders",
        sa.Column("client_order_id", sa.Text(), primary_key=True),
        sa.Column("decision_id", sa.Text(), nullable=False),
        sa.Column("strategy_id", sa.Text(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("venue", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("time_in_force", sa.Text(), nullable=False),
        sa.Column("requested_qty", NUM, nullable=False),
        sa.Column("limit_price", NUM, nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("venue_order_id", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("submitted_at", TS, nullable=True),
        sa.Column("acked_at", TS, nullable=True),
        sa.Column("venue_ts", TS, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("lease_epoch", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"], ["decisions.decision_id"], name="fk_orders_decision_id_decisions"
        ),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name="ck_orders_side"),
        sa.CheckConstraint("type IN ('LIMIT', 'MARKET')", name="ck_orders_type"),
        sa.CheckConstraint(
            "time_in_force IN ('GTC', 'IOC', 'FOK')", name="ck_orders_time_in_force"
        ),
        sa.CheckConstraint(f"state IN ({ORDER_STATES})", name="ck_orders_state"),
        sa.CheckConstraint("requested_qty > 0", name="ck_orders_requested_qty_positive"),
    )
    op.create_index("ix_orders_decision_id", "orders", ["decision_id"])
    op.create_index(
        "ix_orders_non_terminal",
        "orders",
        ["account", "symbol"],
        postgresql_where=sa.text(f"state IN ({NON_TERMINAL})"),
    )

    op.create_table(
        "order_events",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("client_order_id", sa.Text(), nullable=False),
        sa.Column("from_state", sa.Text(), nullable=True),
        sa.Column("to_state", sa.Text(), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("detail", postgresql.JSONB(), nullable=True),
        sa.Column("venue_ts", TS, nullable=True),
        sa.Column("recorded_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["client_order_id"],
            ["orders.client_order_id"],
            name="fk_order_events_client_order_id_orders",
        ),
        sa.CheckConstraint(
            f"from_state IS NULL OR from_state IN ({ORDER_STATES})",
            name="ck_order_events_from_state",
        ),
        sa.CheckConstraint(f"to_state IN ({ORDER_STATES})", name="ck_order_events_to_state"),
    )
    op.create_index("ix_order_events_client_order_id", "order_events", ["client_order_id", "id"])

    op.create_table(
        "fills",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("venue", sa.Text(), nullable=False),
        sa.Column("symbol", sa.Text(), nullable=False),
        sa.Column("trade_id", sa.Text(), nullable=False),
        sa.Column("client_order_id", sa.Text(), nullable=True),
        sa.Column("venue_order_id", sa.Text(), nullable=True),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("qty", NUM, nullable=False),
        sa.Column("price", NUM, nullable=False),
        sa.Column("fee", NUM, nullable=False),
        sa.Column("fee_asset", sa.Text(), nullable=True),
        sa.Column("liquidity", sa.Text(), nullable=True),
        sa.Column("venue_ts", TS, nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.UniqueConstraint("venue", "symbol", "trade_id", name="uq_fills_venue_symbol_trade_id"),
        sa.CheckConstraint("side IN ('BUY', 'SELL')", name="ck_fills_side"),
        sa.CheckConstraint(
            "liquidity IS NULL OR liquidity IN ('MAKER', 'TAKER')", name="ck_fills_liquidity"
        ),
        sa.CheckConstraint("qty > 0", name="ck_fills_qty_positive"),
        sa.CheckConstraint("price >= 0", name="ck_fills_price_non_negative"),
    )
    op.create_index("ix_fills_client_order_id", "fills", ["client_order_id"])
    op.create_index("ix_fills_account_symbol_venue_ts", "fills", ["account", "symbol", "venue_ts"])

    op.create_table(
        "controls",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.Text(), nullable=False),
        sa.Column("set_at", TS, nullable=False),
        sa.Column("cleared_at", TS, nullable=True),
        sa.Column("cleared_by", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "scope IN ('global', 'account', 'strategy', 'symbol')", name="ck_controls_scope"
        ),
        sa.CheckConstraint("kind IN ('halt', 'pause', 'reduce_only')", name="ck_controls_kind"),
        sa.CheckConstraint("(scope = 'global') = (target = '*')", name="ck_controls_global_target"),
        sa.CheckConstraint(
            "active = (cleared_at IS NULL)", name="ck_controls_cleared_when_inactive"
        ),
    )
    op.create_index(
        "uq_controls_active",
        "controls",
        ["scope", "target", "kind"],
        unique=True,
        postgresql_where=sa.text("active"),
    )

    op.create_table(
        "incidents",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", postgresql.JSONB(), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
    )
    op.create_index(
        "uq_incidents_open_dedupe_key",
        "incidents",
        ["dedupe_key"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index("ix_incidents_opened_at", "incidents", ["opened_at"])

    op.create_table(
        "leases",
        sa.Column("account", sa.Text(), primary_key=True),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )

    op.create_table(
        "balances",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("venue", sa.Text(), nullable=False),
        sa.Column("asset", sa.Text(), nullable=False),
        sa.Column("free", NUM, nullable=False),
        sa.Column("locked", NUM, nullable=False),
        sa.Column("venue_ts", TS, nullable=True),
        sa.Column("received_at", TS, nullable=False),
    )
    op.create_index(
        "ix_balances_account_venue_asset_received_at",
        "balances",
        ["account", "venue", "asset", "received_at"],
    )

    for view in (ORDER_STATUS_VIEW, POSITIONS_VIEW, DECISION_TRACE_VIEW, EXECUTION_QUALITY_VIEW):
        op.execute(view)

    op.execute(APPEND_ONLY_FUNCTION)
    for table in ("fills", "order_events"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite()"
        )


def downgrade() -> None:
    for table in ("fills", "order_events"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.execute("DROP FUNCTION IF EXISTS ledger_refuse_rewrite()")
    for view in ("execution_quality", "decision_trace", "positions", "order_status"):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for table in (
        "balances",
        "leases",
        "incidents",
        "controls",
        "fills",
        "order_events",
        "orders",
        "decisions",
    ):
        op.drop_table(table)
