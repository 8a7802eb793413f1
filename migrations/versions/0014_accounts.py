"""Accounts as configuration data, and the engines of a pool.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: one engine process traded exactly one account, named by TRADECTL_ACCOUNT; twenty accounts
meant twenty hand-configured containers. Accounts are now rows an engine pool shares out.

Schema:

- ``accounts`` (account primary key): ``venue`` (checked list), ``environment``,
  ``credentials`` (JSON object of references: ``env:NAME`` or ``file:/path``, never a secret),
  ``strategies_file``, ``settings`` and ``limits`` (JSON objects of overrides), ``enabled``,
  ``created_at``, ``updated_at``. The owner writes it (``tradectl accounts``); the engine role
  only reads it.
- ``engines`` (holder primary key): ``started_at``, ``heartbeat_at``, ``expires_at``,
  ``max_accounts``: each engine of a pool heartbeats its row, so the pool counts live engines
  (an engine that owns no account yet holds no lease to be counted by).
- ``ck_operator_actions_action`` also accepts ``account_add``, ``account_enable`` and
  ``account_disable``.

Downgrade: drops both tables; the journal's check goes back to 0010's list (NOT VALID: rows
written meanwhile stay).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
ACTIONS_0010 = (
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
    "prune",
)
ACTIONS = (*ACTIONS_0010, "account_add", "account_enable", "account_disable")
VENUES = ("paper", "simulator", "binance", "kalshi", "kalshi_simulator")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account", sa.Text(), primary_key=True),
        sa.Column("venue", sa.Text(), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.Column("credentials", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("strategies_file", sa.Text(), nullable=True),
        sa.Column("settings", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("limits", JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(_in("venue", VENUES), name="ck_accounts_venue"),
        sa.CheckConstraint("account ~ '^[A-Za-z0-9_-]{1,64}$'", name="ck_accounts_account"),
        sa.CheckConstraint(
            "jsonb_typeof(credentials) = 'object' AND jsonb_typeof(settings) = 'object' "
            "AND jsonb_typeof(limits) = 'object'",
            name="ck_accounts_objects",
        ),
    )
    op.create_table(
        "engines",
        sa.Column("holder", sa.Text(), primary_key=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("max_accounts", sa.Integer(), nullable=False),
        sa.CheckConstraint("max_accounts >= 0", name="ck_engines_max_accounts"),
    )
    op.drop_constraint("ck_operator_actions_action", "operator_actions", type_="check")
    op.create_check_constraint(
        "ck_operator_actions_action", "operator_actions", _in("action", ACTIONS)
    )


def downgrade() -> None:
    op.drop_constraint("ck_operator_actions_action", "operator_actions", type_="check")
    op.execute(
        "ALTER TABLE operator_actions ADD CONSTRAINT ck_operator_actions_action "
        f"CHECK ({_in('action', ACTIONS_0010)}) NOT VALID"
    )
    op.drop_table("engines")
    op.drop_table("accounts")
