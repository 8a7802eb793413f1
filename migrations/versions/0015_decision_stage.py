"""Each decision records its stage and the capital fraction its size was scaled by.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: the staged path (backtest -> paper -> small live -> live) runs the same strategy at
different sizes. A decision whose order was a tenth of what the strategy asked for must say so,
or its fills cannot be compared with the backtest's (chapter 19.10.4) and "why was this order so
small?" has no answer.

Schema (``decisions``, last columns):

- ``stage text NULL``: ``backtest``, ``paper``, ``small_live`` or ``live``
  (``ck_decisions_stage``).
- ``capital_fraction numeric NULL``: in (0, 1] (``ck_decisions_capital_fraction``), finite
  (``ck_decisions_capital_fraction_finite``); the order's quantity is the strategy's times it.

Existing rows keep NULL in both. Downgrade drops the two columns (and their checks with them).
Both are written when the row is inserted and never updated.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAGES = ("backtest", "paper", "small_live", "live")


def upgrade() -> None:
    op.add_column("decisions", sa.Column("stage", sa.Text()))
    op.add_column("decisions", sa.Column("capital_fraction", sa.Numeric()))
    op.create_check_constraint(
        "ck_decisions_stage",
        "decisions",
        f"stage IS NULL OR stage IN ({', '.join(repr(s) for s in STAGES)})",
    )
    op.create_check_constraint(
        "ck_decisions_capital_fraction",
        "decisions",
        "capital_fraction IS NULL OR (capital_fraction > 0 AND capital_fraction <= 1)",
    )
    op.create_check_constraint(
        "ck_decisions_capital_fraction_finite",
        "decisions",
        "capital_fraction NOT IN ('NaN', 'Infinity', '-Infinity')",
    )


def downgrade() -> None:
    op.drop_column("decisions", "capital_fraction")
    op.drop_column("decisions", "stage")
