"""A compact status of one account (or of each account), read from the ledger."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import Symbol
from engine.ledger.db import database_errors

_ORDERS_BY_STATE = text(
    "SELECT state, count(*) FROM orders WHERE account = :account GROUP BY state ORDER BY state"
)
# Cash flow of the fills net of quote-asset fees; the holding is already net of base-asset fees
# (the positions view's rule). Fees in a third asset (BNB) are not netted: shown apart.
_POSITIONS = text(
    """
    SELECT o.strategy_id, f.symbol,
           sum(CASE WHEN f.side = 'BUY' THEN f.qty ELSE -f.qty END)
             - COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset = i.base_asset), 0) AS net_qty,
           sum(CASE WHEN f.side = 'BUY' THEN -f.qty * f.price ELSE f.qty * f.price END)
             - COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset = i.quote_asset), 0) AS cash,
           COALESCE(sum(f.fee) FILTER (WHERE f.fee_asset IS DISTINCT FROM i.base_asset
                                        AND f.fee_asset IS DISTINCT FROM i.quote_asset), 0)
             AS other_fees,
           count(*) AS fills
    FROM fills f
    JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    WHERE o.account = :account
    GROUP BY o.strategy_id, f.symbol
    ORDER BY o.strategy_id, f.symbol
    """
)
_DECISIONS = text(
    "SELECT outcome, count(*) FROM decisions WHERE account = :account GROUP BY outcome"
)
_OPEN_INCIDENTS = text(
    "SELECT count(*) FROM incidents WHERE resolved_at IS NULL AND account = :account"
)
# What covers the account: its own controls and the global ones (they cover every account).
_CONTROLS = text(
    """SELECT scope, target, kind FROM controls
    WHERE active AND (account IS NULL OR account = :account) ORDER BY id"""
)
# Every account the ledger knows of, for `tradectl status --all-accounts`.
_ACCOUNTS = text(
    """SELECT account FROM leases UNION SELECT account FROM decisions
    UNION SELECT account FROM controls WHERE active AND account IS NOT NULL
    UNION SELECT account FROM incidents WHERE resolved_at IS NULL
    ORDER BY 1"""
)


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():f}"


async def all_accounts_status(engine: AsyncEngine) -> str:
    """One :func:`ledger_status` section per account the ledger knows of."""
    async with engine.connect() as conn:
        accounts = list((await conn.execute(_ACCOUNTS)).scalars())
    sections = [f"account {a}:\n{await ledger_status(engine, a)}" for a in accounts]
    return "\n".join(sections) or "no accounts"


async def ledger_status(
    engine: AsyncEngine, account: str, marks: Mapping[Symbol, Decimal] | None = None
) -> str:
    """``marks`` (latest mid per symbol) turn positions into P&L; without them (the CLI, which
    has no market data) the cash flow is shown."""
    params = {"account": account}
    with database_errors(engine.url):
        async with engine.connect() as conn:
            states = (await conn.execute(_ORDERS_BY_STATE, params)).all()
            positions = (await conn.execute(_POSITIONS, params)).all()
            decisions = (await conn.execute(_DECISIONS, params)).all()
            incidents = (await conn.execute(_OPEN_INCIDENTS, params)).scalar_one()
            controls = (await conn.execute(_CONTROLS, params)).all()
    lines = [
        "orders: " + (", ".join(f"{s}={n}" for s, n in states) or "none"),
        "decisions: " + (", ".join(f"{o}={n}" for o, n in decisions) or "none"),
    ]
    for strategy, symbol, net, cash, other_fees, count in positions:
        mark = (marks or {}).get(Symbol(symbol))
        value = (
            f"P&L {_fmt(cash + net * mark)} at mark {_fmt(mark)}"
            if mark is not None
            else f"cash flow {_fmt(cash)}"
        )
        extra = f", other fees {_fmt(other_fees)}" if other_fees else ""
        lines.append(f"position {strategy} {symbol}: {_fmt(net)} | {value} | fills {count}{extra}")
    if controls:
        lines.append("controls: " + ", ".join(f"{k} {s}:{t}" for s, t, k in controls))
    lines.append(f"open incidents: {incidents}")
    return "\n".join(lines)
