"""Each decision records the strategy's code version and a hash of its config.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: "which code and which settings decided this?" (chapter 19.11.3). A user's strategy lives in
the user's own module now, and its params change between runs; without these a decision cannot
be tied to the code and config that made it, nor two runs' decisions told apart.

Schema (``decisions``, last columns):

- ``strategy_version text NULL``: the version the strategy declares (``version``), else
  ``sha256:<16 hex>`` of its module's source.
- ``config_hash text NULL``: ``sha256:<16 hex>`` of the strategy's validated ``[[strategy]]`` entry.

Existing rows keep NULL in both: nothing recorded which code made them. Downgrade drops the two
columns. Both are written when the row is inserted and, like the rest of a decision, never updated
(the engine role may update only a hold's repeat counters).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("decisions", sa.Column("strategy_version", sa.Text()))
    op.add_column("decisions", sa.Column("config_hash", sa.Text()))


def downgrade() -> None:
    op.drop_column("decisions", "config_hash")
    op.drop_column("decisions", "strategy_version")
