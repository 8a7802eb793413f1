"""The account in every identity: fills, controls, incidents; views never mix two accounts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Hand-written, a frozen copy of engine/ledger/schema.py at this revision (never import it here).

Why: a trade id is unique per venue and symbol only as one account sees it. Two sub-accounts
that trade with each other receive the same trade id, and the built-in simulator restarts its
ids in every process; with ``fills`` unique on ``(venue, symbol, trade_id)`` the second
account's fills were silently dropped. Controls and incidents had no account, so pausing
strategy ``fv-pres`` in one account paused it in every account, and every account's status
listed every incident.

Schema:

- ``fills``: unique on ``(account, venue, symbol, trade_id)``.
- ``controls.account``: NULL only for the global scope (checked); equal to the target for the
  account scope (checked); the unique active index is ``(account, scope, target, kind)`` with
  NULLS NOT DISTINCT (one active global control of a kind, not one per NULL).
- ``incidents.account`` (NOT NULL): one open incident per ``(account, dedupe_key)``.
- The four views join fills, orders and decisions on the account too (dropped and recreated,
  in dependency order, from frozen copies of schema.py's definitions).

Data rule (upgrade). Every existing control and incident gets the account it is about:

1. What it names. A control of scope ``account`` → its target. An incident of scope
   ``account:X`` → X; dedupe keys that carry the account (``loss_limit:<account>:<day>``,
   ``auth_failed:<account>``, ``balance_drift:<account>:…``) → that account; an incident about
   an order (``details.client_order_id`` or a ``fills_missing:`` / ``unknown_venue_order:`` key)
   → the account of that order when the ledger has it.
2. A strategy or symbol (controls of those scopes, incidents of scope ``strategy:a,b`` /
   ``symbol:S``): the accounts with decisions for it (every order has a decision; a strategy
   refused from the start has decisions only). Exactly one → that account.
3. Ambiguous (none or several): the single account in ``leases`` if there is exactly one (the
   one engine that has been running this ledger, whose controls these were).
4. Otherwise the row is duplicated, one per candidate account of step 2 (or, with no candidate,
   one per account the ledger knows from leases and decisions; with none at all, ``paper``, the
   default TRADECTL_ACCOUNT). Before this revision such a control covered every account, so
   keeping it in every account that may have relied on it narrows nothing that was in force;
   an operator can then resume per account.

Global controls keep ``account`` NULL.

Downgrade: restores the old identities. Fills that share a trade id across accounts cannot be
unique again without deleting facts from an append-only table, so the downgrade refuses and
says which. Controls active in several accounts for the same scope, target and kind collapse
to the oldest (the old schema's one control covered every account; the others are cleared by
``migration-0003-downgrade``); open incidents with the same dedupe key in several accounts
keep the oldest open and resolve the others with a note.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: TRADECTL_ACCOUNT's default: the account of a ledger that never recorded one
DEFAULT_ACCOUNT = "paper"

# -- views at 0002 (order_status, decision_trace, execution_quality from 0001; positions 0002) --

ORDER_STATUS_VIEW_0002 = """
CREATE VIEW order_status AS
SELECT
    o.client_order_id,
    o.decision_id,
    o.strategy_id,
    o.account,
    o.venue,
    o.symbol,
    o.side,
    o.type,
    o.state,
    o.requested_qty,
    o.limit_price,
    COALESCE(f.filled_qty, 0) AS filled_qty,
    o.requested_qty - COALESCE(f.filled_qty, 0) AS remaining_qty,
    f.avg_price,
    COALESCE(f.fees, 0) AS fees,
    COALESCE(f.fill_count, 0) AS fill_count,
    f.first_fill_at,
    f.last_fill_at
FROM orders o
LEFT JOIN LATERAL (
    SELECT
        sum(x.qty) AS filled_qty,
        sum(x.qty * x.price) / NULLIF(sum(x.qty), 0) AS avg_price,
        sum(x.fee) AS fees,
        count(*) AS fill_count,
        min(x.venue_ts) AS first_fill_at,
        max(x.venue_ts) AS last_fill_at
    FROM fills x
    WHERE x.client_order_id = o.client_order_id
) f ON true
"""

POSITIONS_VIEW_0002 = """
CREATE VIEW positions AS
SELECT
    o.account,
    o.strategy_id,
    f.symbol,
    sum(CASE WHEN f.side = 'BUY' THEN f.qty ELSE -f.qty END)
        - COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset = i.base_asset), 0) AS net_qty,
    COALESCE(sum(f.qty) FILTER (WHERE f.side = 'BUY'), 0) AS bought_qty,
    COALESCE(sum(f.qty) FILTER (WHERE f.side = 'SELL'), 0) AS sold_qty,
    COALESCE(sum(f.qty * f.price) FILTER (WHERE f.side = 'BUY'), 0) AS buy_notional,
    COALESCE(sum(f.qty * f.price) FILTER (WHERE f.side = 'SELL'), 0) AS sell_notional,
    sum(f.fee) AS fees,
    COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset = i.base_asset), 0) AS base_fees,
    count(*) AS fill_count,
    max(f.venue_ts) AS last_fill_at
FROM fills f
JOIN orders o ON o.client_order_id = f.client_order_id
LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
GROUP BY o.account, o.strategy_id, f.symbol
"""

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
LEFT JOIN orders o ON o.decision_id = d.decision_id{order_account}
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
    WHERE e.client_order_id = o.client_order_id
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
    WHERE x.client_order_id = o.client_order_id{fill_account}
) fl ON true
"""

_EXECUTION_QUALITY = """
CREATE VIEW execution_quality AS
SELECT
    o.client_order_id,
    o.strategy_id,
    o.account,
    o.venue,
    o.symbol,
    o.side,
    o.type,
    o.state,
    d.md_ts,
    d.decided_at,
    o.submitted_at,
    o.acked_at,
    s.first_fill_at,
    EXTRACT(EPOCH FROM (d.decided_at - d.md_ts)) AS md_age_s,
    EXTRACT(EPOCH FROM (o.submitted_at - d.decided_at)) AS decide_to_submit_s,
    EXTRACT(EPOCH FROM (o.acked_at - o.submitted_at)) AS submit_to_ack_s,
    EXTRACT(EPOCH FROM (o.acked_at - d.decided_at)) AS decide_to_ack_s,
    EXTRACT(EPOCH FROM (s.first_fill_at - d.decided_at)) AS decide_to_first_fill_s,
    o.limit_price,
    s.avg_price,
    -- positive when the fills were better than the limit (cheaper buys, dearer sells)
    CASE
        WHEN o.limit_price IS NULL OR s.avg_price IS NULL THEN NULL
        WHEN o.side = 'BUY' THEN o.limit_price - s.avg_price
        ELSE s.avg_price - o.limit_price
    END AS price_improvement,
    o.requested_qty,
    s.filled_qty,
    s.filled_qty / o.requested_qty AS fill_ratio,
    s.fees
FROM orders o
JOIN decisions d ON d.decision_id = o.decision_id{decision_account}
JOIN order_status s ON s.client_order_id = o.client_order_id{status_account}
"""

DECISION_TRACE_VIEW_0002 = _DECISION_TRACE.format(order_account="", fill_account="")
EXECUTION_QUALITY_VIEW_0002 = _EXECUTION_QUALITY.format(decision_account="", status_account="")

VIEWS_0002 = (
    ORDER_STATUS_VIEW_0002,
    POSITIONS_VIEW_0002,
    DECISION_TRACE_VIEW_0002,
    EXECUTION_QUALITY_VIEW_0002,
)

# -- views at 0003: every join of fills, orders and decisions also matches the account ----------

ORDER_STATUS_VIEW = ORDER_STATUS_VIEW_0002.replace(
    "    WHERE x.client_order_id = o.client_order_id\n",
    "    WHERE x.client_order_id = o.client_order_id AND x.account = o.account\n",
)
POSITIONS_VIEW = POSITIONS_VIEW_0002.replace(
    "JOIN orders o ON o.client_order_id = f.client_order_id\n",
    "JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account\n",
)
DECISION_TRACE_VIEW = _DECISION_TRACE.format(
    order_account=" AND o.account = d.account", fill_account=" AND x.account = o.account"
)
EXECUTION_QUALITY_VIEW = _EXECUTION_QUALITY.format(
    decision_account=" AND d.account = o.account", status_account=" AND s.account = o.account"
)
# the replacements above must have matched
assert ORDER_STATUS_VIEW != ORDER_STATUS_VIEW_0002
assert POSITIONS_VIEW != POSITIONS_VIEW_0002

VIEWS = (ORDER_STATUS_VIEW, POSITIONS_VIEW, DECISION_TRACE_VIEW, EXECUTION_QUALITY_VIEW)
VIEW_NAMES = ("order_status", "positions", "decision_trace", "execution_quality")


def _replace_views(definitions: Sequence[str]) -> None:
    for name in reversed(VIEW_NAMES):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for sql in definitions:
        op.execute(sql)


# -- the data rule --------------------------------------------------------------------------------


def _scalars(conn: Connection, sql: str, **params: object) -> list[str]:
    return [row[0] for row in conn.execute(sa.text(sql), params)]


def _candidates(conn: Connection, kind: str, targets: Sequence[str]) -> list[str]:
    """Step 2: the accounts with decisions for these strategies or symbols."""
    column = {"strategy": "strategy_id", "symbol": "symbol"}.get(kind)
    if column is None or not targets:
        return []
    return _scalars(
        conn,
        f"SELECT DISTINCT account FROM decisions WHERE {column} = ANY(:targets) ORDER BY 1",
        targets=list(targets),
    )


def _accounts_for(conn: Connection, kind: str, targets: Sequence[str]) -> list[str]:
    """Steps 2-4 of the data rule (see the module docstring)."""
    candidates = _candidates(conn, kind, targets)
    if len(candidates) == 1:
        return candidates
    leases = _scalars(conn, "SELECT account FROM leases ORDER BY 1")
    if len(leases) == 1:
        return leases
    if candidates:
        return candidates
    known = _scalars(conn, "SELECT account FROM leases UNION SELECT account FROM decisions")
    return sorted(known) or [DEFAULT_ACCOUNT]


def _duplicate(conn: Connection, table: str, row_id: int, accounts: Sequence[str]) -> None:
    """The row gets the first account; a copy of it is inserted for each other one."""
    columns = [
        c
        for c in _scalars(
            conn,
            """SELECT column_name FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = :table
            ORDER BY ordinal_position""",
            table=table,
        )
        if c not in ("id", "account")
    ]
    listed = ", ".join(columns)
    conn.execute(
        sa.text(f"UPDATE {table} SET account = :account WHERE id = :id"),
        {"account": accounts[0], "id": row_id},
    )
    for account in accounts[1:]:
        conn.execute(
            sa.text(
                f"INSERT INTO {table} ({listed}, account) "
                f"SELECT {listed}, :account FROM {table} WHERE id = :id"
            ),
            {"account": account, "id": row_id},
        )


_KEYS_WITH_ACCOUNT = ("loss_limit", "auth_failed", "balance_drift")
_KEYS_WITH_ORDER = ("fills_missing", "unknown_venue_order")


def _incident_account(conn: Connection, scope: str, key: str, coid: str | None) -> str | None:
    """Step 1 for an incident: the account it names, or the account of the order it is about."""
    kind, _, rest = scope.partition(":")
    if kind == "account" and rest:
        return rest
    prefix, _, tail = key.partition(":")
    if prefix in _KEYS_WITH_ACCOUNT and tail:
        return tail.split(":", 1)[0]
    if coid is None and prefix in _KEYS_WITH_ORDER:
        coid = tail
    if coid:
        owners = _scalars(
            conn, "SELECT account FROM orders WHERE client_order_id = :coid", coid=coid
        )
        if owners:
            return owners[0]
    return None


def _migrate_controls(conn: Connection) -> None:
    conn.execute(sa.text("UPDATE controls SET account = target WHERE scope = 'account'"))
    rows = conn.execute(
        sa.text(
            "SELECT id, scope, target FROM controls WHERE scope IN ('strategy', 'symbol') "
            "ORDER BY id"
        )
    ).all()
    for row_id, scope, target in rows:
        _duplicate(conn, "controls", row_id, _accounts_for(conn, scope, [target]))


def _migrate_incidents(conn: Connection) -> None:
    rows = conn.execute(
        sa.text(
            "SELECT id, scope, dedupe_key, details->>'client_order_id' FROM incidents ORDER BY id"
        )
    ).all()
    for row_id, scope, key, coid in rows:
        named = _incident_account(conn, scope, key, coid)
        if named is not None:
            accounts = [named]
        else:
            kind, _, rest = scope.partition(":")
            accounts = _accounts_for(conn, kind, [t for t in rest.split(",") if t])
        _duplicate(conn, "incidents", row_id, accounts)


# -- upgrade / downgrade ----------------------------------------------------------------------------


def upgrade() -> None:
    conn = op.get_bind()

    op.drop_constraint("uq_fills_venue_symbol_trade_id", "fills", type_="unique")
    op.create_unique_constraint(
        "uq_fills_account_venue_symbol_trade_id",
        "fills",
        ["account", "venue", "symbol", "trade_id"],
    )

    op.add_column("controls", sa.Column("account", sa.Text(), nullable=True))
    op.drop_index("uq_controls_active", table_name="controls")
    _migrate_controls(conn)
    op.create_check_constraint(
        "ck_controls_global_account", "controls", "(scope = 'global') = (account IS NULL)"
    )
    op.create_check_constraint(
        "ck_controls_account_target", "controls", "scope <> 'account' OR target = account"
    )
    op.create_index(
        "uq_controls_active",
        "controls",
        ["account", "scope", "target", "kind"],
        unique=True,
        postgresql_where=sa.text("active"),
        postgresql_nulls_not_distinct=True,
    )

    op.add_column("incidents", sa.Column("account", sa.Text(), nullable=True))
    op.drop_index("uq_incidents_open_dedupe_key", table_name="incidents")
    _migrate_incidents(conn)
    op.alter_column("incidents", "account", nullable=False)
    op.create_index(
        "uq_incidents_open_account_dedupe_key",
        "incidents",
        ["account", "dedupe_key"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )

    _replace_views(VIEWS)


def downgrade() -> None:
    conn = op.get_bind()
    shared = conn.execute(
        sa.text(
            """SELECT venue, symbol, trade_id, array_agg(account ORDER BY account)
            FROM fills GROUP BY venue, symbol, trade_id HAVING count(*) > 1 LIMIT 5"""
        )
    ).all()
    if shared:
        raise RuntimeError(
            "cannot downgrade below 0003: these trade ids are recorded in several accounts "
            f"(venue, symbol, trade id, accounts): {[tuple(r) for r in shared]}; fills are "
            "append-only facts, so they stay; keep the ledger at 0003"
        )

    _replace_views(VIEWS_0002)

    op.drop_index("uq_incidents_open_account_dedupe_key", table_name="incidents")
    conn.execute(
        sa.text(
            """UPDATE incidents i SET resolved_at = now(),
                   resolution_note = 'merged into incident ' || k.keep
                                     || ' by the downgrade of migration 0003'
            FROM (SELECT dedupe_key, min(id) AS keep FROM incidents
                  WHERE resolved_at IS NULL GROUP BY dedupe_key HAVING count(*) > 1) k
            WHERE i.dedupe_key = k.dedupe_key AND i.resolved_at IS NULL AND i.id <> k.keep"""
        )
    )
    op.drop_column("incidents", "account")
    op.create_index(
        "uq_incidents_open_dedupe_key",
        "incidents",
        ["dedupe_key"],
        unique=True,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )

    op.drop_index("uq_controls_active", table_name="controls")
    op.drop_constraint("ck_controls_account_target", "controls", type_="check")
    op.drop_constraint("ck_controls_global_account", "controls", type_="check")
    conn.execute(
        sa.text(
            """UPDATE controls c SET active = false, cleared_at = now(),
                   cleared_by = 'migration-0003-downgrade'
            FROM (SELECT scope, target, kind, min(id) AS keep FROM controls
                  WHERE active GROUP BY scope, target, kind HAVING count(*) > 1) k
            WHERE c.active AND c.scope = k.scope AND c.target = k.target AND c.kind = k.kind
              AND c.id <> k.keep"""
        )
    )
    op.drop_column("controls", "account")
    op.create_index(
        "uq_controls_active",
        "controls",
        ["scope", "target", "kind"],
        unique=True,
        postgresql_where=sa.text("active"),
    )

    op.drop_constraint("uq_fills_account_venue_symbol_trade_id", "fills", type_="unique")
    op.create_unique_constraint(
        "uq_fills_venue_symbol_trade_id", "fills", ["venue", "symbol", "trade_id"]
    )
