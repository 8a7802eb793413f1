"""The gate every reservation passes: the controls lock, then the controls that cover the batch.

``Controls.set`` holds the advisory lock (:data:`engine.ledger.controls.CONTROLS_LOCK_KEY`)
exclusively until it commits; a reservation takes it shared. The controls a reservation obeys
must be read by a query whose snapshot is taken *after* the shared lock was granted: a snapshot
from before it would miss a control committed while the reservation waited, and the reservation
would commit after the kill switch without having seen it.

In one SQL statement every plain subquery shares the statement's snapshot, taken before any lock
the statement acquires. A ``VOLATILE`` PL/pgSQL function, though, takes a fresh snapshot for each
query it runs (READ COMMITTED), so :data:`RESERVATION_GATE_FUNCTION` can lock and then read the
controls inside the very statement that reserves: the usual, uncontrolled reservation is one
statement and one round trip, committed on its own (engine/ledger/reservations.py).

:func:`covers` is the one rule of which controls cover a batch: the ledger's statements and the
function are both built from it (the migrations' frozen copy is checked against this one by
tests/migrations).
"""

from __future__ import annotations


def covers(account: str, strategy_ids: str, symbols: str) -> str:
    """The predicate on ``controls c`` for the controls that cover a batch of ``account``'s
    reservations for the given strategies and symbols (SQL expressions): the global controls
    and the account's own; a strategy or symbol paused in another account is its business."""
    return f"""c.active AND (
        c.scope = 'global'
        OR (c.account = {account} AND (
            c.scope = 'account'
            OR (c.scope = 'strategy' AND c.target = ANY({strategy_ids}))
            OR (c.scope = 'symbol' AND c.target = ANY({symbols}))
        ))
    )"""


#: ``reservation_gate(lock_key, account, strategy_ids, symbols)``: true when a control covers the
#: batch. Takes the shared lock first; the lock lasts until the calling transaction ends.
RESERVATION_GATE_FUNCTION = f"""
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
        WHERE {covers("p_account", "p_strategy_ids", "p_symbols")}
    ) INTO covered;
    RETURN covered;
END;
$$
"""

DROP_RESERVATION_GATE = "DROP FUNCTION IF EXISTS reservation_gate(bigint, text, text[], text[])"
