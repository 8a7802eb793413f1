"""The ledger schema: the single source of truth (alembic's ``target_metadata``).

Tables are SQLAlchemy Core: the trading tables here, the operations tables in
:mod:`engine.ledger.schema_operations` (on the same ``metadata``, from
:mod:`engine.ledger.schema_base`); the append-only triggers are SQL text in
:mod:`engine.ledger.schema_ddl` and the views SQL text in :mod:`engine.ledger.views`, so these
files are the whole schema. Migrations under ``migrations/versions`` are frozen, hand-reviewed
copies of it, and ``tests/migrations`` proves the two never drift apart.

Names are the public SQL surface: operators query them (see ARCHITECTURE.md, "Schema sketch").
Money and quantities are ``NUMERIC`` without a scale (exactly what the venue sent); timestamps are
``timestamptz``. Enumerations are ``TEXT`` with a ``CHECK`` listing the stored strings, so adding
a value is a one-line migration rather than an ``ALTER TYPE``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

# the operations tables (requests, journal, accounts, engines, alerts) are in ``metadata``,
# and so get the finite checks below, once their module is imported
import engine.ledger.schema_operations  # noqa: F401
from engine.domain.stage import Stage
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
from engine.ledger.schema_base import _in, _num, _ts
from engine.ledger.schema_base import metadata as metadata

INTENTS = ("buy", "sell", "cancel", "hold")
NON_TERMINAL_STATES: tuple[OrderState, ...] = tuple(
    s for s in OrderState if s not in TERMINAL_STATES
)

# Decision ids and client order ids derive from the decision key, which has no account in it
# (changing the derivation would give a decision made just before an upgrade a new id after it:
# a duplicate order). Two accounts running the same strategy over the same windows therefore
# produce the same ids, so decisions, orders and order events are keyed per account, and every
# reference between them carries the account. The id leads every such key and index: the account
# is the same in nearly every row, and a generic plan built on a young table was seen scanning
# all of an account's orders by an account-first index (half the execution benchmark's speed).
decisions = Table(
    "decisions",
    metadata,
    Column("decision_id", Text, nullable=False),
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
    # (last: added by migration 0007)
    #: the price the decision was made at: the mid of the quote the strategy saw (or the closed
    #: bar's close), or the target price the strategy set; what execution quality measures
    #: slippage and implementation shortfall against. NULL when the strategy saw no price.
    _num("decision_price", nullable=True),
    #: holds only: identical holds that followed this one and got no row of their own (a hold
    #: is recorded when its reason changes, engine/execution/holds.py), and the newest one's time
    Column("repeats", Integer, nullable=False, server_default=text("0")),
    _ts("last_repeat_at", nullable=True),
    # (last: added by migration 0011, chapter 19.11.3)
    #: the strategy's declared version, else ``sha256:`` of its module's source
    Column("strategy_version", Text, nullable=True),
    #: ``sha256:`` of the strategy's validated config entry
    Column("config_hash", Text, nullable=True),
    # (last: added by migration 0015)
    #: the stage (backtest / paper / small_live / live) and the capital fraction the order's
    #: size was scaled by (engine/domain/stage.py); NULL: decided before stages existed
    Column("stage", Text, nullable=True),
    _num("capital_fraction", nullable=True),
    PrimaryKeyConstraint("decision_id", "account", name="decisions_pkey"),
    CheckConstraint(f"stage IS NULL OR {_in('stage', Stage)}", name="ck_decisions_stage"),
    CheckConstraint(
        "capital_fraction IS NULL OR (capital_fraction > 0 AND capital_fraction <= 1)",
        name="ck_decisions_capital_fraction",
    ),
    CheckConstraint(_in("intent", INTENTS), name="ck_decisions_intent"),
    CheckConstraint(f"side IS NULL OR {_in('side', Side)}", name="ck_decisions_side"),
    CheckConstraint(_in("outcome", DecisionOutcome), name="ck_decisions_outcome"),
    CheckConstraint("repeats >= 0", name="ck_decisions_repeats"),
    Index("ix_decisions_account_decided_at", "account", "decided_at"),
    Index("ix_decisions_strategy_id_decided_at", "strategy_id", "decided_at"),
)

orders = Table(
    "orders",
    metadata,
    Column("client_order_id", Text, nullable=False),
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
    PrimaryKeyConstraint("client_order_id", "account", name="orders_pkey"),
    ForeignKeyConstraint(
        ["decision_id", "account"],
        ["decisions.decision_id", "decisions.account"],
        name="fk_orders_decision_id_account_decisions",
    ),
    CheckConstraint(_in("side", Side), name="ck_orders_side"),
    CheckConstraint(_in("type", OrderType), name="ck_orders_type"),
    CheckConstraint(_in("time_in_force", TimeInForce), name="ck_orders_time_in_force"),
    CheckConstraint(_in("state", OrderState), name="ck_orders_state"),
    CheckConstraint("requested_qty > 0", name="ck_orders_requested_qty_positive"),
    Index("ix_orders_decision_id_account", "decision_id", "account"),
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
    # (last: added by migration 0005) the order's account: part of the order's key
    Column("account", Text, nullable=False),
    ForeignKeyConstraint(
        ["client_order_id", "account"],
        ["orders.client_order_id", "orders.account"],
        name="fk_order_events_client_order_id_account_orders",
    ),
    CheckConstraint(
        f"from_state IS NULL OR {_in('from_state', OrderState)}",
        name="ck_order_events_from_state",
    ),
    CheckConstraint(_in("to_state", OrderState), name="ck_order_events_to_state"),
    Index("ix_order_events_client_order_id_account", "client_order_id", "account", "id"),
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
    # An order's fills: every lookup matches the account too (client order ids recur across
    # accounts). Both columns in the index, or the planner may scan the whole account's fills
    # by the unique index's account prefix; client_order_id first serves a lookup by id alone.
    Index("ix_fills_client_order_id_account", "client_order_id", "account"),
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

#: the latest mark per account and symbol: the mid the engine last saw, recorded with its status
#: (``ledger.marks.record``), so every reader of the ``pnl`` view (`tradectl status`, the engine's
#: own status, dashboards) values open positions at the same price
marks = Table(
    "marks",
    metadata,
    Column("account", Text, primary_key=True),
    Column("venue", Text, primary_key=True),
    Column("symbol", Text, primary_key=True),
    _num("price"),
    _ts("marked_at"),
    CheckConstraint("price >= 0", name="ck_marks_price_non_negative"),
)

#: per account, the two marks the loss limits are measured from, so a restart keeps them: the
#: cumulative P&L at the start of the current trading day (today's loss is the change since)
#: and its high-water mark (the drawdown is measured from it). Upserted by the risk gate.
loss_marks = Table(
    "loss_marks",
    metadata,
    Column("account", Text, primary_key=True),
    _ts("day_start"),
    _num("day_start_pnl"),
    _num("peak_pnl"),
    _ts("peak_at"),
    _ts("updated_at"),
)

SETTLEMENT_RESULTS = ("yes", "no", "void")

#: append-only: how a market (a prediction-market contract) settled for an account. Positions in
#: it are closed at ``payout`` per contract (1 when it resolved yes, 0 when no; a voided market
#: pays back what the venue says): the ``pnl`` view's mark from then on.
settlements = Table(
    "settlements",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account", Text, nullable=False),
    Column("venue", Text, nullable=False),
    #: the market (the venue's ticker, stored like every other symbol)
    Column("symbol", Text, nullable=False),
    Column("result", Text, nullable=False),
    _num("payout"),
    _ts("settled_at"),
    _ts("recorded_at"),
    UniqueConstraint("account", "venue", "symbol", name="uq_settlements_account_venue_symbol"),
    CheckConstraint(_in("result", SETTLEMENT_RESULTS), name="ck_settlements_result"),
    CheckConstraint("payout >= 0 AND payout <= 1", name="ck_settlements_payout_range"),
)

# ---------------------------------------------------------------------------------------------
# No NaN or ±Infinity in any money or quantity. Postgres numeric accepts all three, and NaN
# sorts above every number, so ``'NaN' > 0`` is true: ``qty > 0`` alone lets a NaN fill into
# the append-only fills for good. ``NOT IN`` rejects the three (numeric NaN equals NaN) and
# lets NULL through for the nullable columns. Added to every Numeric column of every table here,
# so a money column added later is covered without anyone remembering to.

NON_FINITE = ("NaN", "Infinity", "-Infinity")


def finite_check_name(table: str, column: str) -> str:
    return f"ck_{table}_{column}_finite"


def _add_finite_checks() -> None:
    for table in metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, Numeric):
                table.append_constraint(
                    CheckConstraint(
                        f"{column.name} NOT IN ({', '.join(repr(v) for v in NON_FINITE)})",
                        name=finite_check_name(table.name, column.name),
                    )
                )


_add_finite_checks()
