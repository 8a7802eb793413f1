"""`tradectl prune` is an operator action: it takes a reason and lands in the journal.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: every operator command asks for a reason and records who ran it, when and what came of it
(``operator_actions``); ``prune`` deletes rows (old holds, delivered alerts), so it must too. The
only schema change is the list of actions ``ck_operator_actions_action`` accepts: ``prune`` is
added.

Downgrade: the previous list comes back as ``NOT VALID``. ``operator_actions`` is append-only, so
a ``prune`` row recorded meanwhile cannot be removed, and a validated constraint would refuse it;
``NOT VALID`` keeps the old rule for every new row and leaves the history as it was written.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIONS_0006 = (
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
ACTIONS = (*ACTIONS_0006, "prune")


def _in(values: Sequence[str]) -> str:
    return "action IN (" + ", ".join(f"'{v}'" for v in values) + ")"


def upgrade() -> None:
    op.drop_constraint("ck_operator_actions_action", "operator_actions", type_="check")
    op.create_check_constraint("ck_operator_actions_action", "operator_actions", _in(ACTIONS))


def downgrade() -> None:
    op.drop_constraint("ck_operator_actions_action", "operator_actions", type_="check")
    op.execute(
        "ALTER TABLE operator_actions ADD CONSTRAINT ck_operator_actions_action "
        f"CHECK ({_in(ACTIONS_0006)}) NOT VALID"
    )
