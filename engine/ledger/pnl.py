"""P&L, balances and execution quality as people read them: the ``pnl``, ``current_balances``
and ``execution_quality`` views of one account (engine/ledger/views.py), and the marks and
settlements the P&L is valued at.

The reads take an ``AsyncEngine`` rather than a ledger: `tradectl status`, `tradectl pnl`,
`tradectl quality` and the engine's own status all read the same rows, whatever process they
run in, so P&L is the same number wherever it is shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.types import Symbol
from engine.ledger.db import database_errors
from engine.ledger.part import LedgerPart
from engine.ledger.schema import SETTLEMENT_RESULTS
from engine.ledger.statements import Statement, from_json, require_finite, retry_transient
from engine.ledger.views import FOLD_FILLS, QUALITY_SUMMARY

# Realized P&L and fees since a time are the whole fold's minus the fold of the fills before it
# (average cost is path-dependent: folding only the later fills would lose the cost they close
# against). Without :since nothing is before, and the figures are the whole history's.
_PNL = text(
    f"""
    WITH before AS (
        SELECT o.strategy_id, f.venue, f.symbol, {FOLD_FILLS} AS fold,
               COALESCE(sum(f.fee * f.price) FILTER (WHERE f.fee_asset = i.base_asset), 0)
                   AS base_fee_value
        FROM fills f
        JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
        LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
        WHERE f.account = :account AND f.venue_ts < CAST(:since AS timestamptz)
        GROUP BY o.strategy_id, f.venue, f.symbol
    )
    SELECT p.strategy_id, p.venue, p.symbol, p.quote_asset, p.position, p.avg_cost,
           p.realized - COALESCE(b.fold[3], 0) AS realized, p.unrealized,
           p.realized - COALESCE(b.fold[3], 0) + p.unrealized AS total,
           p.fees - COALESCE(b.fold[4] + b.base_fee_value, 0) AS fees,
           COALESCE(ot.other_fees, '{{}}'::jsonb) AS other_fees, p.mark, p.mark_source,
           p.marked_at, p.settled_at, p.fill_count, i.step_size
    FROM pnl p
    LEFT JOIN before b ON b.strategy_id = p.strategy_id AND b.venue = p.venue
                      AND b.symbol = p.symbol
    LEFT JOIN instruments i ON i.venue = p.venue AND i.symbol = p.symbol
    LEFT JOIN LATERAL (
        SELECT jsonb_object_agg(t.fee_asset, t.total::text) AS other_fees
        FROM (
            SELECT f.fee_asset, sum(f.fee) AS total
            FROM fills f
            JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
            WHERE f.account = :account AND o.strategy_id = p.strategy_id
              AND f.venue = p.venue AND f.symbol = p.symbol AND f.fee <> 0
              AND f.fee_asset IS DISTINCT FROM i.quote_asset
              AND f.fee_asset IS DISTINCT FROM i.base_asset
              AND f.venue_ts >= COALESCE(CAST(:since AS timestamptz), '-infinity')
            GROUP BY f.fee_asset
        ) t
    ) ot ON true
    WHERE p.account = :account
    ORDER BY p.strategy_id, p.venue, p.symbol
    """
)
_BALANCES = text(
    """
    SELECT venue, asset, free, locked, total, expected, difference, received_at, baseline_at
    FROM current_balances WHERE account = :account ORDER BY venue, asset
    """
)
_QUALITY = text(
    QUALITY_SUMMARY.format(
        where="""WHERE account = :account
          AND (CAST(:strategy AS text) IS NULL OR strategy_id = CAST(:strategy AS text))
          AND (CAST(:since AS timestamptz) IS NULL OR decided_at >= CAST(:since AS timestamptz))"""
    )
    + " ORDER BY strategy_id"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PnlRow:
    """A row of the ``pnl`` view (realized and fees since ``since`` when one was given)."""

    strategy_id: str
    venue: str
    symbol: str
    quote_asset: str | None
    position: Decimal
    avg_cost: Decimal | None
    realized: Decimal
    unrealized: Decimal | None
    total: Decimal | None
    fees: Decimal
    #: fees in a third asset (BNB), per asset, not netted into P&L
    other_fees: Mapping[str, Decimal]
    mark: Decimal | None
    #: ``settlement`` / ``mid`` / ``last_fill``
    mark_source: str | None
    marked_at: datetime | None
    settled_at: datetime | None
    fill_count: int
    #: the instrument's quantity step, for showing the position (None when not known)
    step_size: Decimal | None


@dataclass(frozen=True, slots=True, kw_only=True)
class BalanceRow:
    """A row of the ``current_balances`` view."""

    venue: str
    asset: str
    free: Decimal | None
    locked: Decimal | None
    total: Decimal | None
    expected: Decimal | None
    difference: Decimal | None
    received_at: datetime | None
    baseline_at: datetime | None


async def pnl_rows(
    engine: AsyncEngine, account: str, *, since: datetime | None = None
) -> list[PnlRow]:
    with database_errors(engine.url):
        async with engine.connect() as conn:
            rows = (await conn.execute(_PNL, {"account": account, "since": since})).mappings()
            return [
                PnlRow(
                    **{
                        k: v
                        for k, v in row.items()
                        if k not in ("other_fees", "quote_asset", "fill_count")
                    },
                    quote_asset=row["quote_asset"],
                    fill_count=int(row["fill_count"]),
                    other_fees={
                        a: Decimal(v) for a, v in (from_json(row["other_fees"]) or {}).items()
                    },
                )
                for row in rows
            ]


async def balance_rows(engine: AsyncEngine, account: str) -> list[BalanceRow]:
    with database_errors(engine.url):
        async with engine.connect() as conn:
            rows = (await conn.execute(_BALANCES, {"account": account})).mappings()
            return [BalanceRow(**row) for row in rows]


async def quality_rows(
    engine: AsyncEngine,
    account: str,
    *,
    strategy: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Per strategy: orders, fill rate, slippage, latency percentiles and implementation
    shortfall (the ``execution_quality_by_strategy`` view's columns), over the decisions made
    since ``since``."""
    params = {"account": account, "strategy": strategy, "since": since}
    with database_errors(engine.url):
        async with engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(_QUALITY, params)).mappings()]


# -- the prices the P&L is valued at -------------------------------------------------------------

SQL_RECORD_MARKS = Statement(
    """
    INSERT INTO marks AS m (account, venue, symbol, price, marked_at)
    SELECT :account, :venue, t.symbol, t.price, :now
    FROM unnest(CAST(:symbol AS text[]), CAST(:price AS numeric[])) AS t(symbol, price)
    ON CONFLICT (account, venue, symbol) DO UPDATE
        SET price = EXCLUDED.price, marked_at = EXCLUDED.marked_at
    """
)
SQL_RECORD_SETTLEMENT = Statement(
    """
    INSERT INTO settlements (account, venue, symbol, result, payout, settled_at, recorded_at)
    VALUES (:account, :venue, :symbol, :result, :payout, :settled_at, :now)
    ON CONFLICT (account, venue, symbol) DO NOTHING
    RETURNING id
    """
)


SQL_SETTLEMENTS = Statement(
    """SELECT id, symbol, result, payout, settled_at, recorded_at FROM settlements
    WHERE account = :account AND venue = :venue ORDER BY id"""
)
SQL_SETTLEMENT_WATERMARK = Statement(
    "SELECT COALESCE(max(id), 0) FROM settlements WHERE account = :account AND venue = :venue"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SettlementRow:
    """A row of ``settlements``."""

    id: int
    symbol: Symbol
    result: str
    payout: Decimal
    settled_at: datetime
    recorded_at: datetime


class Marks(LedgerPart):
    """``ledger.marks``: the latest mid per symbol, the price open positions are valued at."""

    @retry_transient
    async def record(self, marks: Mapping[Symbol, Decimal]) -> None:
        if not marks:
            return
        for symbol, price in marks.items():
            require_finite(f"mark of {symbol}", price=price)
        symbols = sorted(marks)
        async with self._connection() as db:
            await SQL_RECORD_MARKS.run(
                db,
                {
                    "account": self.account,
                    "venue": self.venue,
                    "symbol": symbols,
                    "price": [marks[s] for s in symbols],
                    "now": self._clock(),
                },
            )


class Settlements(LedgerPart):
    """``ledger.settlements``: how a market (a prediction-market contract) settled. Append-only,
    one per symbol: recording it again is a no-op."""

    async def read(self) -> dict[Symbol, SettlementRow]:
        """Every settlement of this account and venue, by symbol."""
        async with self._connection() as db:
            rows = await SQL_SETTLEMENTS.run(db, {"account": self.account, "venue": self.venue})
            return {
                Symbol(r["symbol"]): SettlementRow(**{**dict(r), "symbol": Symbol(r["symbol"])})
                for r in rows
            }

    async def watermark(self) -> int:
        """The newest settlement's id (0 when none): the balance check's "nothing moved"."""
        async with self._connection() as db:
            params = {"account": self.account, "venue": self.venue}
            return int((await SQL_SETTLEMENT_WATERMARK.run(db, params)).scalar())

    @retry_transient
    async def record(
        self, symbol: Symbol, *, result: str, payout: Decimal, settled_at: datetime
    ) -> bool:
        """``True`` when this call recorded it, ``False`` when it was already recorded."""
        require_finite(f"settlement of {symbol}", payout=payout)
        if result not in SETTLEMENT_RESULTS:
            raise ValueError(
                f"settlement result must be one of {', '.join(SETTLEMENT_RESULTS)}, got {result!r}"
            )
        if not Decimal(0) <= payout <= Decimal(1):
            raise ValueError(f"a contract settles between 0 and 1 per contract, got {payout}")
        async with self._connection() as db:
            rows = await SQL_RECORD_SETTLEMENT.run(
                db,
                {
                    "account": self.account,
                    "venue": self.venue,
                    "symbol": symbol,
                    "result": result,
                    "payout": payout,
                    "settled_at": settled_at,
                    "now": self._clock(),
                },
            )
            return bool(rows)
