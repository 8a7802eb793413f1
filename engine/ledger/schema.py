"""The ledger schema: the single source of truth (alembic's ``target_metadata``).

Tables are SQLAlchemy Core; views and triggers are SQL text kept here as constants, so this file
is the whole schema. Migrations under ``migrations/versions`` are frozen, hand-reviewed copies of
it, and ``tests/migrations`` proves the two never drift apart.

Names are the public SQL surface: operators query them (see ARCHITECTURE.md, "Schema sketch").
Money and quantities are ``NUMERIC`` without a scale (exactly what the venue sent); timestamps are
``timestamptz``. Enumerations are ``TEXT`` with a ``CHECK`` listing the stored strings, so adding
a value is a one-line migration rather than an ``ALTER TYPE``.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from engine.domain.types import (
    TERMINAL_STATES,
    ControlKind,
    ControlScope,
    DecisionOutcome,
    Liquidity,
    OrderState,
    OrderType,
    Side,
    TimeInForce,
)

metadata = MetaData()


def _in(column: str, values: Iterable[str | StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


def _ts(name: str, *, nullable: bool = False) -> Column[object]:
    return Column(name, DateTime(timezone=True), nullable=nullable)


def _num(name: str, *, nullable: bool = False) -> Column[object]:
    return Column(name, Numeric(asdecimal=True), nullable=nullable)


INTENTS = ("buy", "sell", "cancel", "hold")
NON_TERMINAL_STATES: tuple[OrderState, ...] = tuple(
    s for s in OrderState if s not in TERMINAL_STATES
)

decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", Text, primary_key=True),
    Column("strategy_id", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("intent", Text, nullable=False),
    Column("side", Text, nullable=True),
    _num("quantity", nullable=True),
    _num("limit_price", nullable=True),
    Column("reason", Text, nullable=False),
    #: timestamp of the market data the decision was made on
    _ts("md_ts"),
    _ts("decided_at"),
    Column("interval_key", Text, nullable=False),
    Column("sequence", Integer, nullable=False),
    #: a list of Verdict.as_json(): every check, its limit and the observed value
    Column("verdicts", JSONB, nullable=False),
    Column("outcome", Text, nullable=False),
    CheckConstraint(_in("intent", INTENTS), name="ck_decisions_intent"),
    CheckConstraint(f"side IS NULL OR {_in('side', Side)}", name="ck_decisions_side"),
    CheckConstraint(_in("outcome", DecisionOutcome), name="ck_decisions_outcome"),
    Index("ix_decisions_account_decided_at", "account", "decided_at"),
    Index("ix_decisions_strategy_id_decided_at", "strategy_id", "decided_at"),
)

orders = Table(
    "orders",
    metadata,
    Column("client_order_id", Text, primary_key=True),
    Column("decision_id", Text, nullable=False),
    Column("strategy_id", Text, nullable=False),
    Column("account", Text, nullable=False),
    Column("venue", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("side", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("time_in_force", Text, nullable=False),
    _num("requested_qty"),
    _num("limit_price", nullable=True),
    Column("state", Text, nullable=False),
    Column("venue_order_id", Text, nullable=True),
    _ts("created_at"),
    #: the intent's deadline: after it an order never seen by the venue is not resent
    _ts("expires_at"),
    _ts("submitted_at", nullable=True),
    _ts("acked_at", nullable=True),
    _ts("venue_ts", nullable=True),
    Column("last_error", Text, nullable=True),
    #: the lease epoch under which the order was reserved (which process owned the account)
    Column("lease_epoch", BigInteger, nullable=True),
    _ts("updated_at"),
    ForeignKeyConstraint(
        ["decision_id"], ["decisions.decision_id"], name="fk_orders_decision_id_decisions"
    ),
    CheckConstraint(_in("side", Side), name="ck_orders_side"),
    CheckConstraint(_in("type", OrderType), name="ck_orders_type"),
    CheckConstraint(_in("time_in_force", TimeInForce), name="ck_orders_time_in_force"),
    CheckConstraint(_in("state", OrderState), name="ck_orders_state"),
    CheckConstraint("requested_qty > 0", name="ck_orders_requested_qty_positive"),
    Index("ix_orders_decision_id", "decision_id"),
    # Startup and the recovery loop scan only the orders still in flight: keep that index small.
    Index(
        "ix_orders_non_terminal",
        "account",
        "symbol",
        postgresql_where=text(_in("state", NON_TERMINAL_STATES)),
    ),
)

order_events = Table(
    "order_events",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("client_order_id", Text, nullable=False),
    Column("from_state", Text, nullable=True),
    Column("to_state", Text, nullable=False),
    Column("cause", Text, nullable=False),
    Column("detail", JSONB, nullable=True),
    _ts("venue_ts", nullable=True),
    _ts("recorded_at"),
    ForeignKeyConstraint(
        ["client_order_id"],
        ["orders.client_order_id"],
        name="fk_order_events_client_order_id_orders",
    ),
    CheckConstraint(
        f"from_state IS NULL OR {_in('from_state', OrderState)}",
        name="ck_order_events_from_state",
    ),
    CheckConstraint(_in("to_state", OrderState), name="ck_order_events_to_state"),
    Index("ix_order_events_client_order_id", "client_order_id", "id"),
)

fills = Table(
    "fills",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("venue", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("trade_id", Text, nullable=False),
    # No foreign key: a fill of an order the ledger does not know (manual, or lost) must still be
    # recorded; the reconciler raises an incident for it.
    Column("client_order_id", Text, nullable=True),
    Column("venue_order_id", Text, nullable=True),
    Column("account", Text, nullable=False),
    Column("side", Text, nullable=False),
    _num("qty"),
    _num("price"),
    _num("fee"),
    Column("fee_asset", Text, nullable=True),
    Column("liquidity", Text, nullable=True),
    _ts("venue_ts"),
    _ts("received_at"),
    _ts("recorded_at"),
    # A trade id is unique per venue and symbol only as one account sees it: two sub-accounts
    # trading with each other get the same id, and the simulator restarts its ids per process.
    UniqueConstraint(
        "account", "venue", "symbol", "trade_id", name="uq_fills_account_venue_symbol_trade_id"
    ),
    CheckConstraint(_in("side", Side), name="ck_fills_side"),
    CheckConstraint(
        f"liquidity IS NULL OR {_in('liquidity', Liquidity)}", name="ck_fills_liquidity"
    ),
    CheckConstraint("qty > 0", name="ck_fills_qty_positive"),
    CheckConstraint("price >= 0", name="ck_fills_price_non_negative"),
    Index("ix_fills_client_order_id", "client_order_id"),
    # Positions per (account, symbol), and the newest trade per symbol at startup.
    Index("ix_fills_account_symbol_venue_ts", "account", "symbol", "venue_ts"),
)

controls = Table(
    "controls",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("scope", Text, nullable=False),
    #: the account / strategy / symbol covered; '*' for global
    Column("target", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    Column("set_by", Text, nullable=False),
    _ts("set_at"),
    _ts("cleared_at", nullable=True),
    Column("cleared_by", Text, nullable=True),
    # (last: added by migration 0003, and a column added later goes to the end of the table)
    #: the account whose orders the control covers; NULL only for the global scope (one switch
    #: for every account), so a strategy or symbol paused in one account trades in another
    Column("account", Text, nullable=True),
    CheckConstraint(_in("scope", ControlScope), name="ck_controls_scope"),
    CheckConstraint(_in("kind", ControlKind), name="ck_controls_kind"),
    CheckConstraint("(scope = 'global') = (target = '*')", name="ck_controls_global_target"),
    CheckConstraint("(scope = 'global') = (account IS NULL)", name="ck_controls_global_account"),
    CheckConstraint("scope <> 'account' OR target = account", name="ck_controls_account_target"),
    CheckConstraint("active = (cleared_at IS NULL)", name="ck_controls_cleared_when_inactive"),
    # At most one active control of a kind per account and target: setting it twice is
    # idempotent. NULLS NOT DISTINCT: there is one global control of a kind, not one per NULL.
    Index(
        "uq_controls_active",
        "account",
        "scope",
        "target",
        "kind",
        unique=True,
        postgresql_where=text("active"),
        postgresql_nulls_not_distinct=True,
    ),
)

incidents = Table(
    "incidents",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    _ts("opened_at"),
    Column("kind", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("severity", Text, nullable=False),
    #: actionable: what happened and what the operator should do
    Column("message", Text, nullable=False),
    Column("details", JSONB, nullable=False),
    #: one open incident per mismatch and account, not one per reconcile cycle
    Column("dedupe_key", Text, nullable=False),
    _ts("resolved_at", nullable=True),
    Column("resolution_note", Text, nullable=True),
    # (last: added by migration 0003)
    #: the account whose engine opened it (and whose operator has to act on it)
    Column("account", Text, nullable=False),
    Index(
        "uq_incidents_open_account_dedupe_key",
        "account",
        "dedupe_key",
        unique=True,
        postgresql_where=text("resolved_at IS NULL"),
    ),
    Index("ix_incidents_opened_at", "opened_at"),
)

leases = Table(
    "leases",
    metadata,
    Column("account", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    #: incremented on every takeover; writes carry it so a fenced-out process cannot reserve
    Column("epoch", BigInteger, nullable=False),
    _ts("heartbeat_at"),
    _ts("expires_at"),
)

balances = Table(
    "balances",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account", Text, nullable=False),
    Column("venue", Text, nullable=False),
    Column("asset", Text, nullable=False),
    _num("free"),
    _num("locked"),
    _ts("venue_ts", nullable=True),
    _ts("received_at"),
    Index(
        "ix_balances_account_venue_asset_received_at", "account", "venue", "asset", "received_at"
    ),
)

# Each symbol's assets, so the ledger can say what a fill did to each balance (and net base-asset
# fees out of positions). Upserted by the engine whenever it fetches the venue's rules.
instruments = Table(
    "instruments",
    metadata,
    Column("venue", Text, primary_key=True),
    Column("symbol", Text, primary_key=True),
    Column("base_asset", Text, nullable=False),
    Column("quote_asset", Text, nullable=False),
    _num("tick_size"),
    _num("step_size"),
    _num("min_notional"),
    _ts("updated_at"),
)

#: what the balance reconciliation compares the venue with: per asset, the venue's total at the
#: last reconcile that agreed, and the newest fill (``fills.id``) that total already contained
balance_baselines = Table(
    "balance_baselines",
    metadata,
    Column("account", Text, primary_key=True),
    Column("venue", Text, primary_key=True),
    Column("asset", Text, primary_key=True),
    _num("total"),
    Column("fill_id", BigInteger, nullable=False),
    _ts("taken_at"),
)

OPERATOR_REQUEST_KINDS = ("reconcile", "cancel_all")

# Operations asked for from another process (`tradectl reconcile`, `tradectl cancel-all`): the
# engine holding the account's lease is the only writer to the venue, so it executes them.
operator_requests = Table(
    "operator_requests",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("reason", Text, nullable=False),
    #: options of the request (e.g. accept_balances)
    Column("params", JSONB, nullable=False),
    _ts("requested_at"),
    _ts("handled_at", nullable=True),
    Column("handled_by", Text, nullable=True),
    Column("result", JSONB, nullable=True),
    CheckConstraint(_in("kind", OPERATOR_REQUEST_KINDS), name="ck_operator_requests_kind"),
    Index(
        "ix_operator_requests_pending",
        "account",
        "id",
        postgresql_where=text("handled_at IS NULL"),
    ),
)


# ---------------------------------------------------------------------------------------------
# Views. Everything derived (filled quantity, average price, positions) comes from fills, never
# from a stored counter that could drift. Order matters: later views may use earlier ones.
# Every join between fills, orders and decisions matches the account too: an identifier (a
# trade id, a client order id derived from a decision key) may recur in another account, and
# no row may mix two accounts.

ORDER_STATUS_VIEW = """
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
    WHERE x.client_order_id = o.client_order_id AND x.account = o.account
) f ON true
"""

# net_qty is what is held: Binance-style buy commissions are taken from the base asset received,
# so the fees whose asset is the symbol's base asset (from ``instruments``) are netted out; a
# strategy selling its net_qty then never sells more than the venue holds.
POSITIONS_VIEW = """
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
JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
GROUP BY o.account, o.strategy_id, f.symbol
"""

# "For any order, one query on decision_trace shows the decision, its reason and md time, every
# verdict, the order's events and its fills." Quantities inside the JSON are text: exact decimals.
DECISION_TRACE_VIEW = """
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
    WHERE x.client_order_id = o.client_order_id AND x.account = o.account
) fl ON true
"""

EXECUTION_QUALITY_VIEW = """
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
JOIN decisions d ON d.decision_id = o.decision_id AND d.account = o.account
JOIN order_status s ON s.client_order_id = o.client_order_id AND s.account = o.account
"""

#: (name, CREATE VIEW text) in creation order; drop in reverse.
VIEWS: tuple[tuple[str, str], ...] = (
    ("order_status", ORDER_STATUS_VIEW),
    ("positions", POSITIONS_VIEW),
    ("decision_trace", DECISION_TRACE_VIEW),
    ("execution_quality", EXECUTION_QUALITY_VIEW),
)

# ---------------------------------------------------------------------------------------------
# Append-only tables: fills and order events are facts. A mistake is corrected by a new row
# (an incident, a compensating event), never by rewriting history.

APPEND_ONLY_TABLES = ("fills", "order_events")

APPEND_ONLY_FUNCTION = """
CREATE FUNCTION ledger_refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'fills and order_events are facts; record a correction as a new row '
                     '(or an incident) instead of rewriting history';
END;
$$
"""


def _append_only_triggers(table: str) -> tuple[str, str]:
    return (
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_rewrite()",
    )


#: Statements to run after the tables exist, in order.
POST_CREATE_DDL: tuple[str, ...] = (
    *(sql for _, sql in VIEWS),
    APPEND_ONLY_FUNCTION,
    *(stmt for table in APPEND_ONLY_TABLES for stmt in _append_only_triggers(table)),
)

#: Statements that undo POST_CREATE_DDL, in order (before the tables are dropped).
PRE_DROP_DDL: tuple[str, ...] = (
    *(
        f"DROP TRIGGER IF EXISTS {table}_{suffix} ON {table}"
        for table in APPEND_ONLY_TABLES
        for suffix in ("append_only", "no_truncate")
    ),
    "DROP FUNCTION IF EXISTS ledger_refuse_rewrite()",
    *(f"DROP VIEW IF EXISTS {name}" for name, _ in reversed(VIEWS)),
)


def create_all(conn: Connection) -> None:
    """Build the schema straight from this module (tests compare it with the migrations)."""
    metadata.create_all(conn)
    for stmt in POST_CREATE_DDL:
        conn.exec_driver_sql(stmt)


def drop_all(conn: Connection) -> None:
    for stmt in PRE_DROP_DDL:
        conn.exec_driver_sql(stmt)
    metadata.drop_all(conn)
