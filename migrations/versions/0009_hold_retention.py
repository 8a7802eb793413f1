"""Holds recorded when their reason changes, with a count of the identical holds in between.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: a strategy that does nothing says so at every decision (a quote strategy once a second), and
every hold was a ``decisions`` row: about 100,000 rows a day for the two example strategies, all
saying the same thing. The engine now records a hold only when its reason changes (numbers in the
reason aside) and counts the identical holds that follow on the recorded row.

Schema (``decisions``, last columns):

- ``repeats integer NOT NULL DEFAULT 0`` (``ck_decisions_repeats``: ``>= 0``): identical holds that
  followed this one without a row of their own.
- ``last_repeat_at timestamptz NULL``: when the newest of them was decided.

Existing rows keep ``repeats = 0``: each of them was recorded on its own. Downgrade drops the two
columns; the holds they counted were never rows, so nothing a row said is lost.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "decisions",
        sa.Column("repeats", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column("decisions", sa.Column("last_repeat_at", sa.DateTime(timezone=True)))
    op.create_check_constraint("ck_decisions_repeats", "decisions", "repeats >= 0")


def downgrade() -> None:
    op.drop_constraint("ck_decisions_repeats", "decisions", type_="check")
    op.drop_column("decisions", "last_repeat_at")
    op.drop_column("decisions", "repeats")
