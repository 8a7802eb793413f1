"""Operator requests, instruments, balance baselines; positions net of base-asset fees.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

- ``operator_requests``: `tradectl reconcile` / `tradectl cancel-all` from another process are
  queued here and executed by the engine that holds the account's lease (the only venue writer).
- ``instruments``: each symbol's base and quote asset, so fills translate into balance changes.
- ``balance_baselines``: the venue balance per asset at the last agreeing reconcile and the
  newest fill it contained; expected balance = baseline + what later fills did.
- ``positions``: ``net_qty`` subtracts fees paid in the base asset (Binance buy commissions), and
  a ``base_fees`` column shows them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
NUM = sa.Numeric(asdecimal=True)

POSITIONS_VIEW_0001 = """
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
JOIN orders o ON o.client_order_id = f.client_order_id
LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
GROUP BY o.account, o.strategy_id, f.symbol
"""


def upgrade() -> None:
    op.create_table(
        "instruments",
        sa.Column("venue", sa.Text(), primary_key=True),
        sa.Column("symbol", sa.Text(), primary_key=True),
        sa.Column("base_asset", sa.Text(), nullable=False),
        sa.Column("quote_asset", sa.Text(), nullable=False),
        sa.Column("tick_size", NUM, nullable=False),
        sa.Column("step_size", NUM, nullable=False),
        sa.Column("min_notional", NUM, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "balance_baselines",
        sa.Column("account", sa.Text(), primary_key=True),
        sa.Column("venue", sa.Text(), primary_key=True),
        sa.Column("asset", sa.Text(), primary_key=True),
        sa.Column("total", NUM, nullable=False),
        sa.Column("fill_id", sa.BigInteger(), nullable=False),
        sa.Column("taken_at", TS, nullable=False),
    )
    op.create_table(
        "operator_requests",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("params", postgresql.JSONB(), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("handled_at", TS, nullable=True),
        sa.Column("handled_by", sa.Text(), nullable=True),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.CheckConstraint("kind IN ('reconcile', 'cancel_all')", name="ck_operator_requests_kind"),
    )
    op.create_index(
        "ix_operator_requests_pending",
        "operator_requests",
        ["account", "id"],
        postgresql_where=sa.text("handled_at IS NULL"),
    )
    # No other view reads positions, so it can be replaced on its own.
    op.execute("DROP VIEW IF EXISTS positions")
    op.execute(POSITIONS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS positions")
    op.execute(POSITIONS_VIEW_0001)
    op.drop_index("ix_operator_requests_pending", table_name="operator_requests")
    op.drop_table("operator_requests")
    op.drop_table("balance_baselines")
    op.drop_table("instruments")
