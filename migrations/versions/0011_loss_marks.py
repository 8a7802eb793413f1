"""Loss limits that survive a restart: the day-start mark and the high-water mark per account.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: the drawdown check's peak lived in memory and reset at every restart, and "today's" loss
counted a carried position's whole open P&L because the P&L at the day boundary was not stored.

Schema:

- ``loss_marks`` (account primary key): ``day_start`` (the trading day's start), ``day_start_pnl``
  (the account's cumulative P&L, realized + unrealized, at that start), ``peak_pnl`` and
  ``peak_at`` (its high-water mark), ``updated_at``. NUMERIC columns are finite
  (``ck_loss_marks_<column>_finite``). The engine upserts its account's row.

Data rule: the table starts empty; the engine's first look at the P&L writes the row.

Downgrade: drops the table (the next start measures from its own first look again).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NUM = sa.Numeric(asdecimal=True)
TS = sa.DateTime(timezone=True)
NON_FINITE = ("NaN", "Infinity", "-Infinity")


def _finite(column: str) -> sa.CheckConstraint:
    values = ", ".join(repr(v) for v in NON_FINITE)
    return sa.CheckConstraint(f"{column} NOT IN ({values})", name=f"ck_loss_marks_{column}_finite")


def upgrade() -> None:
    op.create_table(
        "loss_marks",
        sa.Column("account", sa.Text(), primary_key=True),
        sa.Column("day_start", TS, nullable=False),
        sa.Column("day_start_pnl", NUM, nullable=False),
        sa.Column("peak_pnl", NUM, nullable=False),
        sa.Column("peak_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        _finite("day_start_pnl"),
        _finite("peak_pnl"),
    )


def downgrade() -> None:
    op.drop_table("loss_marks")
