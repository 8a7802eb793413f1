"""A paper account's fills with their decisions, as ``tradectl compare`` reads them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.ledger.db import database_errors

_FILLS = text(
    """
    SELECT f.client_order_id, o.strategy_id, f.symbol, f.side, f.qty, f.price, f.venue_ts
    FROM fills f
    JOIN orders o ON o.account = f.account AND o.client_order_id = f.client_order_id
    WHERE f.account = :account
    ORDER BY f.venue_ts, f.id
    """
)

_DECISIONS = text(
    """
    SELECT min(decided_at) AS first, max(decided_at) AS last,
           array_agg(DISTINCT strategy_id) AS strategies,
           (array_agg(stage ORDER BY decided_at DESC) FILTER (WHERE stage IS NOT NULL))[1]
               AS stage,
           (array_agg(capital_fraction ORDER BY decided_at DESC)
               FILTER (WHERE capital_fraction IS NOT NULL))[1] AS capital_fraction
    FROM decisions WHERE account = :account
    """
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperRun:
    """What the account decided: when, which strategies, at which stage and fraction."""

    first: datetime
    last: datetime
    strategies: tuple[str, ...]
    stage: str | None
    capital_fraction: Decimal | None


async def paper_run(engine: AsyncEngine, account: str) -> PaperRun | None:
    with database_errors(engine.url):
        async with engine.connect() as conn:
            row = (await conn.execute(_DECISIONS, {"account": account})).one()
    if row.first is None:
        return None
    return PaperRun(
        first=row.first,
        last=row.last,
        strategies=tuple(sorted(row.strategies)),
        stage=row.stage,
        capital_fraction=row.capital_fraction,
    )


async def paper_fills(
    engine: AsyncEngine, account: str
) -> list[tuple[str, str, str, str, Decimal, Decimal, datetime]]:
    """Every fill of the account: ``(coid, strategy, symbol, side, qty, price, venue_ts)``."""
    with database_errors(engine.url):
        async with engine.connect() as conn:
            rows = (await conn.execute(_FILLS, {"account": account})).all()
    return [tuple(r) for r in rows]
