"""Retention: what ``tradectl prune`` may delete, and nothing else.

Only rows that are commentary, never facts the books rest on: holds (the decisions to do
nothing; engine.domain.holds already keeps them to a row per reason per hour), alerts already
delivered, and the heartbeat rows of pool engines that stopped long ago. Orders, order events,
fills, balances, controls, incidents and every decision that became an order or was denied stay
for good: they are the ledger.

Every statement is scoped to one account (or, asked for explicitly, to every account).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.ledger.db import database_errors

# A hold's row stands for the identical holds after it: it goes when the newest of them is
# older than the cut. The NOT EXISTS is belt and braces: a hold never has an order.
_HOLDS = """
    FROM decisions d
    WHERE d.intent = 'hold' AND COALESCE(d.last_repeat_at, d.decided_at) < :before
      AND (CAST(:account AS text) IS NULL OR d.account = :account)
      AND NOT EXISTS (SELECT 1 FROM orders o
                      WHERE o.decision_id = d.decision_id AND o.account = d.account)
"""
# The alerts outbox (when the ledger has one): only alerts already delivered.
_ALERTS = """
    FROM alerts a
    WHERE a.delivered_at IS NOT NULL AND a.created_at < :before
      AND (CAST(:account AS text) IS NULL OR a.account = :account)
"""
# The heartbeat rows of pool engines long gone (each start adds one). An engine belongs to no
# account: only a prune of every account removes them.
_ENGINES = """
    FROM engines e
    WHERE e.expires_at < :before AND CAST(:account AS text) IS NULL
"""
#: what prune removes: name -> (table, the FROM/WHERE above); a table the ledger lacks is skipped
PRUNABLE: dict[str, tuple[str, str]] = {
    "holds": ("decisions", _HOLDS),
    "delivered alerts": ("alerts", _ALERTS),
    "departed engines": ("engines", _ENGINES),
}
#: rows of no account: pruned, and reported, only by a prune of every account
EVERY_ACCOUNT_ONLY = frozenset({"departed engines"})


@dataclass(frozen=True, slots=True)
class Pruned:
    what: str
    rows: int


async def prune(
    engine: AsyncEngine,
    *,
    account: str | None,
    before: datetime,
    dry_run: bool = False,
    journal: Callable[[asyncpg.Connection, list[Pruned]], Awaitable[None]] | None = None,
) -> list[Pruned]:
    """Delete (or, ``dry_run``, count) what :data:`PRUNABLE` names, older than ``before``, of
    ``account`` (``None``: every account), in one transaction; ``journal`` records the
    deletion in the operator journal within that transaction."""
    params = {"account": account, "before": before}
    out: list[Pruned] = []
    with database_errors(engine.url):
        async with engine.begin() as conn:
            for what, (table, where) in PRUNABLE.items():
                if account is not None and what in EVERY_ACCOUNT_ONLY:
                    continue
                exists = await conn.execute(text("SELECT to_regclass(:t)"), {"t": table})
                if exists.scalar() is None:
                    continue
                if dry_run:
                    sql = f"SELECT count(*) {where}"
                else:
                    sql = f"WITH gone AS (DELETE {where} RETURNING 1) SELECT count(*) FROM gone"
                rows = (await conn.execute(text(sql), params)).scalar_one()
                out.append(Pruned(what, int(rows)))
            if journal is not None and not dry_run:
                # the same connection, so the journal row commits with the deletion or not at all
                raw = (await conn.get_raw_connection()).driver_connection
                assert isinstance(raw, asyncpg.Connection)
                await journal(raw, out)
    return out
