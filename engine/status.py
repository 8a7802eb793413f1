"""A compact status of one account, read from the ledger's public views."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_ORDERS_BY_STATE = text(
    "SELECT state, count(*) FROM orders WHERE account = :account GROUP BY state ORDER BY state"
)
_POSITIONS = text(
    "SELECT strategy_id, symbol, net_qty, buy_notional, sell_notional, fees, fill_count "
    "FROM positions WHERE account = :account ORDER BY strategy_id, symbol"
)
_DECISIONS = text(
    "SELECT outcome, count(*) FROM decisions WHERE account = :account GROUP BY outcome"
)
_OPEN_INCIDENTS = text("SELECT count(*) FROM incidents WHERE resolved_at IS NULL")
_CONTROLS = text("SELECT scope, target, kind FROM controls WHERE active ORDER BY id")


def _fmt(value: Decimal) -> str:
    return f"{value.normalize():f}"


async def ledger_status(engine: AsyncEngine, account: str) -> str:
    async with engine.connect() as conn:
        states = (await conn.execute(_ORDERS_BY_STATE, {"account": account})).all()
        positions = (await conn.execute(_POSITIONS, {"account": account})).all()
        decisions = (await conn.execute(_DECISIONS, {"account": account})).all()
        incidents = (await conn.execute(_OPEN_INCIDENTS)).scalar_one()
        controls = (await conn.execute(_CONTROLS)).all()
    lines = [
        "orders: " + (", ".join(f"{s}={n}" for s, n in states) or "none"),
        "decisions: " + (", ".join(f"{o}={n}" for o, n in decisions) or "none"),
    ]
    for strategy, symbol, net, bought, sold, fees, count in positions:
        # cash flow of the fills: what was received for sales minus what was paid for buys
        lines.append(
            f"position {strategy} {symbol}: {_fmt(net)} "
            f"(fills={count}, cash flow={_fmt(sold - bought)}, fees={_fmt(fees)})"
        )
    if controls:
        lines.append("controls: " + ", ".join(f"{k} {s}:{t}" for s, t, k in controls))
    lines.append(f"open incidents: {incidents}")
    return "\n".join(lines)
