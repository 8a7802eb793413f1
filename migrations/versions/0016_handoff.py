"""The graceful hand-off is an operator request and a journal action: ``release``.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: `tradectl release` asks the engine that owns an account to give it up (stop deciding, let
in-flight orders reach a definite state, release the lease so the next owner need not wait the
TTL). Like reconcile and cancel-all it is a request row the lease holder runs, and the journal
records it. The only schema change is the lists ``ck_operator_requests_kind`` and
``ck_operator_actions_action`` accept: ``release`` is added to both.

Downgrade: the previous lists come back as ``NOT VALID`` (``operator_actions`` is append-only,
and a handled request is history): the old rule holds for new rows, the past stays as written.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS_0006 = ("reconcile", "cancel_all")
KINDS = (*KINDS_0006, "release")
ACTIONS_0014 = (
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
    "account_add",
    "account_enable",
    "account_disable",
)
ACTIONS = (*ACTIONS_0014, "release")


def _in(column: str, values: Sequence[str]) -> str:
    return f"{column} IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.drop_constraint("ck_operator_requests_kind", "operator_requests", type_="check")
    op.create_check_constraint("ck_operator_requests_kind", "operator_requests", _in("kind", KINDS))
    op.drop_constraint("ck_operator_actions_action", "operator_actions", type_="check")
    op.create_check_constraint(
        "ck_operator_actions_action", "operator_actions", _in("action", ACTIONS)
    )


def downgrade() -> None:
    op.drop_constraint("ck_operator_actions_action", "operator_actions", type_="check")
    op.execute(
        "ALTER TABLE operator_actions ADD CONSTRAINT ck_operator_actions_action "
        f"CHECK ({_in('action', ACTIONS_0014)}) NOT VALID"
    )
    op.drop_constraint("ck_operator_requests_kind", "operator_requests", type_="check")
    op.execute(
        "ALTER TABLE operator_requests ADD CONSTRAINT ck_operator_requests_kind "
        f"CHECK ({_in('kind', KINDS_0006)}) NOT VALID"
    )
