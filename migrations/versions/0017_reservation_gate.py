"""The reservation gate: a reservation is one statement, so one round trip.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01

Hand-written, a frozen copy of engine/ledger/control_gate.py at this revision (never import it
here).

Why: a reservation must read the controls with a snapshot taken after it holds the controls
lock (shared; ``Controls.set`` holds it exclusively until its control commits), or a kill switch
committed while the reservation waited would not stop it. Until now that took a transaction of
its own: BEGIN, the lock and the lease fence, the reservation, COMMIT (four round trips on the
path from a decision to the order on the wire). A ``VOLATILE`` PL/pgSQL function takes a fresh
snapshot for each query it runs, so ``reservation_gate`` can take the lock and then read the
controls inside the statement that reserves, which then commits on its own.

Schema: one function, ``reservation_gate(p_lock_key bigint, p_account text, p_strategy_ids
text[], p_symbols text[]) RETURNS boolean``: true when an active control covers the batch (the
global controls, the account's own, its strategies' and symbols'). No table changes; no data.

Downgrade drops the function (engines of the previous revision never call it).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESERVATION_GATE_FUNCTION = """
CREATE FUNCTION reservation_gate(
    p_lock_key bigint, p_account text, p_strategy_ids text[], p_symbols text[]
) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    covered boolean;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(p_lock_key);
    -- a query of its own: its snapshot follows the lock
    SELECT EXISTS (
        SELECT 1 FROM controls c
        WHERE c.active AND (
        c.scope = 'global'
        OR (c.account = p_account AND (
            c.scope = 'account'
            OR (c.scope = 'strategy' AND c.target = ANY(p_strategy_ids))
            OR (c.scope = 'symbol' AND c.target = ANY(p_symbols))
        ))
    )
    ) INTO covered;
    RETURN covered;
END;
$$
"""


def upgrade() -> None:
    op.execute(RESERVATION_GATE_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS reservation_gate(bigint, text, text[], text[])")
