"""Decisions, orders and order events keyed per account.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: decision ids and client order ids derive from the decision key (strategy, symbol,
interval, side, sequence), which has no account in it, while ``decisions`` was keyed by
``decision_id`` alone and ``orders`` by ``client_order_id`` alone. Two accounts running the same
strategies over the same windows therefore collided: the second account's reservation was
refused (BLOCKED, "give each account its own TRADECTL_ORDER_ID_PREFIX"), and even with
different prefixes its decision row was silently dropped (``ON CONFLICT (decision_id) DO
NOTHING``), so its order pointed at the other account's decision. The derivation stays as it is:
changing it would give a decision made just before the upgrade a new id after it, and the
engine would place that order a second time.

Schema:

- ``decisions``: primary key ``(decision_id, account)``.
- ``orders``: primary key ``(client_order_id, account)``; the decision is referenced by
  ``(decision_id, account)`` (``fk_orders_decision_id_account_decisions``, index
  ``ix_orders_decision_id_account`` instead of ``ix_orders_decision_id``).
- ``order_events.account`` (NOT NULL, last column): the order is referenced by ``(client_order_id,
  account)`` (``fk_order_events_client_order_id_account_orders``, index
  ``ix_order_events_client_order_id_account`` instead of ``ix_order_events_client_order_id``).
- The id leads every new key and index, the account second: the account is the same in nearly
  every row, and an account-first key let a generic plan built on a young table scan all of an
  account's orders for one of them (the execution benchmark lost half its throughput).
- ``fills``: ``ix_fills_client_order_id_account`` instead of ``ix_fills_client_order_id``: every
  lookup of an order's fills matches the account, and with only the id indexed the planner
  was seen summing an order's fills by scanning all of the account's (the execution benchmark
  lost half its throughput).
- ``decision_trace``: an order's events are matched on the account too.

Data rule (upgrade):

1. ``order_events.account`` is the account of the event's order (client order ids are unique
   before this revision, so the match is exact). ``order_events`` is append-only: its
   ``order_events_append_only`` trigger is disabled for this one backfill of a column that did
   not exist, inside the migration's transaction, and enabled again.
2. An order whose decision row belongs to another account (the dropped row of the bug above)
   gets a decision row of its own account under the same decision id, so that every order
   references its own account's decision. What is known of it is filled in: strategy, symbol,
   side, quantity and limit price from the order, decided_at = the order's created_at (the
   reservation follows the decision immediately), outcome ``reserved``; intent, interval and
   sequence from the other account's row (the same decision key); md_ts from that row too (the
   same market-data window, the best figure there is). Its verdicts were never stored, so they
   are ``[]``, and the reason says all this and names the other account. Nothing is deleted.

Downgrade: restores the single-column keys. It refuses, naming them, when two accounts share a
decision id or a client order id (including decision rows restored by step 2): one of them
would have to be deleted or renamed, and which is not the migration's call. ``order_events``
loses its ``account`` column (dropping a column is not a rewrite of any row's facts).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DECISION_TRACE = """
CREATE VIEW decision_trace AS
SELECT
    d.decision_id,
    d.strategy_id,
    d.account,
    d.symbol,
    d.intent,
    d.side,
    d.quantity,
    d.limit_price,
    d.reason,
    d.md_ts,
    d.decided_at,
    d.interval_key,
    d.sequence,
    d.outcome,
    d.verdicts,
    o.client_order_id,
    o.venue,
    o.type AS order_type,
    o.time_in_force,
    o.requested_qty,
    o.limit_price AS order_limit_price,
    o.state,
    o.venue_order_id,
    o.created_at,
    o.expires_at,
    o.submitted_at,
    o.acked_at,
    o.venue_ts,
    o.last_error,
    o.lease_epoch,
    COALESCE(ev.events, '[]'::jsonb) AS events,
    COALESCE(fl.fills, '[]'::jsonb) AS fills
FROM decisions d
LEFT JOIN orders o ON o.decision_id = d.decision_id AND o.account = d.account
LEFT JOIN LATERAL (
    SELECT jsonb_agg(
        jsonb_build_object(
            'id', e.id,
            'from_state', e.from_state,
            'to_state', e.to_state,
            'cause', e.cause,
            'detail', e.detail,
            'venue_ts', e.venue_ts,
            'recorded_at', e.recorded_at
        )
        ORDER BY e.id
    ) AS events
    FROM order_events e
    WHERE e.client_order_id = o.client_order_id{event_account}
) ev ON true
LEFT JOIN LATERAL (
    SELECT jsonb_agg(
        jsonb_build_object(
            'trade_id', x.trade_id,
            'side', x.side,
            'qty', x.qty::text,
            'price', x.price::text,
            'fee', x.fee::text,
            'fee_asset', x.fee_asset,
            'liquidity', x.liquidity,
            'venue_ts', x.venue_ts,
            'received_at', x.received_at
        )
        ORDER BY x.venue_ts, x.id
    ) AS fills
    FROM fills x
    WHERE x.client_order_id = o.client_order_id AND x.account = o.account
) fl ON true
"""

DECISION_TRACE_VIEW_0004 = _DECISION_TRACE.format(event_account="")
DECISION_TRACE_VIEW = _DECISION_TRACE.format(event_account=" AND e.account = o.account")

# Step 2 of the data rule. DISTINCT ON: one restored row per (account, decision id), even if
# several orders of the account point at the same foreign decision.
RESTORE_DECISIONS = """
INSERT INTO decisions (decision_id, strategy_id, account, symbol, intent, side, quantity,
                       limit_price, reason, md_ts, decided_at, interval_key, sequence, verdicts,
                       outcome)
SELECT DISTINCT ON (o.account, o.decision_id)
       o.decision_id, o.strategy_id, o.account, o.symbol, d.intent, o.side, o.requested_qty,
       o.limit_price,
       'restored by migration 0005: this account''s decision row was dropped because account '
           || d.account || ' had recorded the same decision id first; strategy, symbol, side, '
           || 'quantity and limit price are this account''s order''s, decided_at its creation, '
           || 'md_ts the other account''s, and the risk verdicts were never stored. The other '
           || 'account''s reason: ' || d.reason,
       d.md_ts, o.created_at, d.interval_key, d.sequence, '[]'::jsonb, 'reserved'
FROM orders o
JOIN decisions d ON d.decision_id = o.decision_id
WHERE d.account <> o.account
  AND NOT EXISTS (
      SELECT 1 FROM decisions own
      WHERE own.account = o.account AND own.decision_id = o.decision_id
  )
ORDER BY o.account, o.decision_id, o.created_at
"""

#: rows named in a refused downgrade
SHOWN = 20


def _shared(conn: Connection, table: str, column: str) -> list[str]:
    rows = conn.execute(
        sa.text(
            f"""SELECT {column}, array_agg(account ORDER BY account) FROM {table}
            GROUP BY {column} HAVING count(*) > 1 ORDER BY {column} LIMIT {SHOWN}"""
        )
    ).all()
    return [f"{value} (accounts {', '.join(accounts)})" for value, accounts in rows]


def upgrade() -> None:
    conn = op.get_bind()

    op.add_column("order_events", sa.Column("account", sa.Text(), nullable=True))
    # Step 1: a one-off backfill of a new column, not a rewrite of recorded facts; the trigger
    # that refuses UPDATE on order_events is off only inside this transaction.
    op.execute("ALTER TABLE order_events DISABLE TRIGGER order_events_append_only")
    op.execute(
        "UPDATE order_events e SET account = o.account FROM orders o "
        "WHERE o.client_order_id = e.client_order_id"
    )
    op.execute("ALTER TABLE order_events ENABLE TRIGGER order_events_append_only")
    op.alter_column("order_events", "account", nullable=False)

    op.drop_constraint("fk_order_events_client_order_id_orders", "order_events", type_="foreignkey")
    op.drop_constraint("fk_orders_decision_id_decisions", "orders", type_="foreignkey")
    op.drop_constraint("orders_pkey", "orders", type_="primary")
    op.drop_constraint("decisions_pkey", "decisions", type_="primary")
    op.create_primary_key("decisions_pkey", "decisions", ["decision_id", "account"])
    op.create_primary_key("orders_pkey", "orders", ["client_order_id", "account"])

    # Step 2, now that the same decision id may exist once per account.
    conn.execute(sa.text(RESTORE_DECISIONS))

    op.create_foreign_key(
        "fk_orders_decision_id_account_decisions",
        "orders",
        "decisions",
        ["decision_id", "account"],
        ["decision_id", "account"],
    )
    op.create_foreign_key(
        "fk_order_events_client_order_id_account_orders",
        "order_events",
        "orders",
        ["client_order_id", "account"],
        ["client_order_id", "account"],
    )
    op.drop_index("ix_orders_decision_id", table_name="orders")
    op.create_index("ix_orders_decision_id_account", "orders", ["decision_id", "account"])
    op.drop_index("ix_order_events_client_order_id", table_name="order_events")
    op.create_index(
        "ix_order_events_client_order_id_account",
        "order_events",
        ["client_order_id", "account", "id"],
    )

    op.drop_index("ix_fills_client_order_id", table_name="fills")
    op.create_index("ix_fills_client_order_id_account", "fills", ["client_order_id", "account"])

    op.execute("DROP VIEW decision_trace")
    op.execute(DECISION_TRACE_VIEW)


def downgrade() -> None:
    conn = op.get_bind()
    shared = [
        f"{what}: {'; '.join(ids)}"
        for what, ids in (
            ("decision ids", _shared(conn, "decisions", "decision_id")),
            ("client order ids", _shared(conn, "orders", "client_order_id")),
        )
        if ids
    ]
    if shared:
        raise RuntimeError(
            "cannot downgrade below 0005: these ids are recorded in several accounts, and "
            "before 0005 an id was unique across accounts: "
            + " | ".join(shared)
            + ". Nothing was changed; keep the ledger at 0005"
        )

    op.execute("DROP VIEW decision_trace")
    op.execute(DECISION_TRACE_VIEW_0004)

    op.drop_index("ix_fills_client_order_id_account", table_name="fills")
    op.create_index("ix_fills_client_order_id", "fills", ["client_order_id"])

    op.drop_index("ix_order_events_client_order_id_account", table_name="order_events")
    op.create_index("ix_order_events_client_order_id", "order_events", ["client_order_id", "id"])
    op.drop_index("ix_orders_decision_id_account", table_name="orders")
    op.create_index("ix_orders_decision_id", "orders", ["decision_id"])

    op.drop_constraint(
        "fk_order_events_client_order_id_account_orders", "order_events", type_="foreignkey"
    )
    op.drop_constraint("fk_orders_decision_id_account_decisions", "orders", type_="foreignkey")
    op.drop_constraint("orders_pkey", "orders", type_="primary")
    op.drop_constraint("decisions_pkey", "decisions", type_="primary")
    op.create_primary_key("decisions_pkey", "decisions", ["decision_id"])
    op.create_primary_key("orders_pkey", "orders", ["client_order_id"])
    op.create_foreign_key(
        "fk_orders_decision_id_decisions",
        "orders",
        "decisions",
        ["decision_id"],
        ["decision_id"],
    )
    op.create_foreign_key(
        "fk_order_events_client_order_id_orders",
        "order_events",
        "orders",
        ["client_order_id"],
        ["client_order_id"],
    )
    op.drop_column("order_events", "account")
