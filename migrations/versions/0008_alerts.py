"""The alerts outbox.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: alerts (a halt, a reconciliation mismatch, a rejection, a lost lease…) must reach a human
even when the channel is down when they happen, and must never hold up trading. Each alert is a
row written in the transaction of the fact it reports (or its own insert), delivered afterwards
by the engine's alert task with retries; a row stays undelivered until every channel took it.

Schema: ``alerts`` (per account): level (CRITICAL / HIGH / MEDIUM / LOW), kind, scope, an
actionable message, details; created / delivered times, attempts, next attempt, last error, the
channels (URL hashes) that took it; the cooldown's ``suppressed`` / ``summarized`` counts,
``suppressed_into`` (a repeat that was not sent) and ``summary_of`` (the summary of repeats).

No data rule (a new table). Downgrade drops the table and its undelivered alerts with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("level", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "delivered_to",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
        sa.Column("suppressed", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("summarized", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("suppressed_into", sa.BigInteger(), nullable=True),
        sa.Column("summary_of", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["suppressed_into"], ["alerts.id"], name="fk_alerts_suppressed_into"
        ),
        sa.ForeignKeyConstraint(["summary_of"], ["alerts.id"], name="fk_alerts_summary_of"),
        sa.CheckConstraint(
            "level IN ('CRITICAL', 'HIGH', 'MEDIUM', 'LOW')", name="ck_alerts_level"
        ),
        sa.CheckConstraint(
            "attempts >= 0 AND summarized >= 0 AND summarized <= suppressed",
            name="ck_alerts_counts",
        ),
        sa.CheckConstraint(
            "suppressed_into IS NULL OR delivered_at IS NULL",
            name="ck_alerts_suppressed_unsent",
        ),
    )
    op.create_index(
        "ix_alerts_pending",
        "alerts",
        ["account", "id"],
        postgresql_where=sa.text("delivered_at IS NULL AND suppressed_into IS NULL"),
    )
    op.create_index("ix_alerts_account_kind_scope_id", "alerts", ["account", "kind", "scope", "id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_account_kind_scope_id", table_name="alerts")
    op.drop_index("ix_alerts_pending", table_name="alerts")
    op.drop_table("alerts")
