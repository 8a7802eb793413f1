"""The operator journal: ``operator_actions``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: halts, pauses, cancel-alls, reconciles and incident resolutions left a trace scattered over
``controls.set_by``, ``operator_requests.requested_by`` and ``incidents.resolution_note``, and a
cleared control or a dropped request said nothing about who did it or why. Every operator
action now writes one row here (who, when, which scope, why, what came of it) in the same
transaction as the change it records.

Schema:

- ``operator_actions``: one row per operator action, per account; ``action`` and ``scope`` are
  checked lists, ``strategy`` / ``symbol`` are set exactly for those scopes, and ``reason``
  may not be blank. ``request_id`` names the ``operator_requests`` row of a queued operation
  (no foreign key: a request's lifetime is not the journal's).
- Append-only like ``fills`` and ``order_events``: the ``ledger_refuse_rewrite`` triggers
  ``operator_actions_append_only`` (UPDATE, DELETE) and ``operator_actions_no_truncate``.

No data rule: the table starts empty (nothing recorded before this revision is invented).
Downgrade drops the table and its triggers, and with them the journal.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)

ACTIONS = (
    "halt",
    "unhalt",
    "pause",
    "resume",
    "reduce_only",
    "reduce_only_off",
    "reconcile",
    "accept_balances",
    "cancel_all",
    "incident_resolve",
    "request_drop",
)
SCOPES = ("global", "account", "strategy", "symbol")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "operator_actions",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("acted_at", TS, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("strategy", sa.Text(), nullable=True),
        sa.Column("symbol", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("details", postgresql.JSONB(), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(_in("action", ACTIONS), name="ck_operator_actions_action"),
        sa.CheckConstraint(_in("scope", SCOPES), name="ck_operator_actions_scope"),
        sa.CheckConstraint(
            "(scope = 'strategy') = (strategy IS NOT NULL)", name="ck_operator_actions_strategy"
        ),
        sa.CheckConstraint(
            "(scope = 'symbol') = (symbol IS NOT NULL)", name="ck_operator_actions_symbol"
        ),
        sa.CheckConstraint("btrim(reason) <> ''", name="ck_operator_actions_reason"),
    )
    op.create_index(
        "ix_operator_actions_account_acted_at", "operator_actions", ["account", "acted_at"]
    )
    op.execute(
        "CREATE TRIGGER operator_actions_append_only BEFORE UPDATE OR DELETE ON operator_actions "
        "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite()"
    )
    op.execute(
        "CREATE TRIGGER operator_actions_no_truncate BEFORE TRUNCATE ON operator_actions "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS operator_actions_no_truncate ON operator_actions")
    op.execute("DROP TRIGGER IF EXISTS operator_actions_append_only ON operator_actions")
    op.drop_index("ix_operator_actions_account_acted_at", table_name="operator_actions")
    op.drop_table("operator_actions")
