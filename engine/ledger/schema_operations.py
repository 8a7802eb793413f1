"""The operations tables of the schema: requests and the operator's journal, accounts and the
engines that run them, and the alert outbox (the trading tables are in
:mod:`engine.ledger.schema`, which re-exports these)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from engine.domain.types import ControlScope
from engine.ledger.schema_base import _in, _ts, metadata

OPERATOR_REQUEST_KINDS = ("reconcile", "cancel_all", "release")

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


OPERATOR_ACTIONS = (
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
    "release",
)

# The operator journal: who did what, when, to which scope, why, and what came of it. Written
# in the same transaction as the change it records, and append-only: the journal is the record
# an operator is held to, so nobody rewrites it.
operator_actions = Table(
    "operator_actions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    #: the account the operator acted as (also for a global control: the one that set it)
    Column("account", Text, nullable=False),
    _ts("acted_at"),
    #: the OS user, or the name given with ``--by``
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("strategy", Text, nullable=True),
    Column("symbol", Text, nullable=True),
    Column("reason", Text, nullable=False),
    #: what came of it, in words ("set (control 7)", "queued as request 3", "was not open")
    Column("outcome", Text, nullable=False),
    #: the ids touched (control, incident, request) and the options given
    Column("details", JSONB, nullable=False),
    #: a queued operation's request: its result arrives later, in operator_requests
    Column("request_id", BigInteger, nullable=True),
    CheckConstraint(_in("action", OPERATOR_ACTIONS), name="ck_operator_actions_action"),
    CheckConstraint(_in("scope", ControlScope), name="ck_operator_actions_scope"),
    CheckConstraint(
        "(scope = 'strategy') = (strategy IS NOT NULL)", name="ck_operator_actions_strategy"
    ),
    CheckConstraint("(scope = 'symbol') = (symbol IS NOT NULL)", name="ck_operator_actions_symbol"),
    CheckConstraint("btrim(reason) <> ''", name="ck_operator_actions_reason"),
    Index("ix_operator_actions_account_acted_at", "account", "acted_at"),
)

ACCOUNT_VENUES = ("paper", "simulator", "binance", "kalshi", "kalshi_simulator")

# The accounts an engine pool trades: configuration, not facts. Each row names the venue, the
# environment, where the credentials are (``{"binance_api_key": "env:NAME"}`` or
# ``"file:/path"``: references only, never a secret: engine/accounts.py refuses anything else),
# the strategies file and overrides of settings and account limits. The owner (``tradectl
# accounts``) writes it; engines only read it.
accounts = Table(
    "accounts",
    metadata,
    Column("account", Text, primary_key=True),
    Column("venue", Text, nullable=False),
    #: testnet / production / demo ...: which endpoints of the venue (engine/accounts.py)
    Column("environment", Text, nullable=False),
    Column("credentials", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    #: unset: the engine's TRADECTL_STRATEGIES_FILE
    Column("strategies_file", Text, nullable=True),
    #: TRADECTL_* settings for this account only (``{"lease_ttl_s": 5}``)
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    #: overrides of the strategies file's ``[account.limits]``
    Column("limits", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    _ts("created_at"),
    _ts("updated_at"),
    CheckConstraint(_in("venue", ACCOUNT_VENUES), name="ck_accounts_venue"),
    CheckConstraint("account ~ '^[A-Za-z0-9_-]{1,64}$'", name="ck_accounts_account"),
    CheckConstraint(
        "jsonb_typeof(credentials) = 'object' AND jsonb_typeof(settings) = 'object' "
        "AND jsonb_typeof(limits) = 'object'",
        name="ck_accounts_objects",
    ),
)

# The engine processes of a pool, each heartbeating its row: how many engines share the
# enabled accounts (engine/pool.py). A process-level row, the one table without an account:
# an engine that owns no account yet must still be counted.
engines = Table(
    "engines",
    metadata,
    Column("holder", Text, primary_key=True),
    _ts("started_at"),
    _ts("heartbeat_at"),
    _ts("expires_at"),
    Column("max_accounts", Integer, nullable=False),
    CheckConstraint("max_accounts >= 0", name="ck_engines_max_accounts"),
)

ALERT_LEVELS = ("CRITICAL", "HIGH", "MEDIUM", "LOW")

# The alerts outbox: written in the transaction of the fact it reports where there is one (an
# incident, a halt, a rejection), delivered afterwards by the engine's alert task. A row stays
# undelivered until every configured channel took it, so a channel that is down loses nothing.
# Repeats of (account, level, kind, scope) within the cooldown are not sent: they point at the
# alert they repeat (``suppressed_into``), which counts them, and a summary row (``summary_of``)
# reports them when the cooldown is over.
alerts = Table(
    "alerts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account", Text, nullable=False),
    Column("level", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("scope", Text, nullable=False),
    #: actionable: what happened and what to do
    Column("message", Text, nullable=False),
    Column("details", JSONB, nullable=False),
    _ts("created_at"),
    #: when every channel took it (NULL: not yet, or never for a suppressed repeat)
    _ts("delivered_at", nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    _ts("next_attempt_at"),
    Column("last_error", Text, nullable=True),
    #: the channels (a hash of each URL, never the URL: it carries tokens) that took it
    Column("delivered_to", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    #: repeats folded into this alert by the cooldown, and how many of them a summary reported
    Column("suppressed", Integer, nullable=False, server_default=text("0")),
    Column("summarized", Integer, nullable=False, server_default=text("0")),
    Column("suppressed_into", BigInteger, nullable=True),
    Column("summary_of", BigInteger, nullable=True),
    ForeignKeyConstraint(["suppressed_into"], ["alerts.id"], name="fk_alerts_suppressed_into"),
    ForeignKeyConstraint(["summary_of"], ["alerts.id"], name="fk_alerts_summary_of"),
    CheckConstraint(_in("level", ALERT_LEVELS), name="ck_alerts_level"),
    CheckConstraint(
        "attempts >= 0 AND summarized >= 0 AND summarized <= suppressed",
        name="ck_alerts_counts",
    ),
    CheckConstraint(
        "suppressed_into IS NULL OR delivered_at IS NULL", name="ck_alerts_suppressed_unsent"
    ),
    # what the delivery task claims: an account's unsent alerts, oldest first
    Index(
        "ix_alerts_pending",
        "account",
        "id",
        postgresql_where=text("delivered_at IS NULL AND suppressed_into IS NULL"),
    ),
    # the cooldown's look-back: the newest alert of the same kind and scope
    Index("ix_alerts_account_kind_scope_id", "account", "kind", "scope", "id"),
)
