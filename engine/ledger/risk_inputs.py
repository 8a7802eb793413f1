"""What the risk gate reads from the ledger: positions, submission times and typical order
sizes, so limits survive a restart."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from engine.domain.types import StrategyId, Symbol
from engine.ledger.part import LedgerPart
from engine.ledger.statements import Statement

SQL_NET_POSITIONS = Statement(
    """
    SELECT strategy_id, symbol, net_qty FROM positions WHERE account = :account
    """
)
SQL_ACCOUNT_POSITION = Statement(
    """
    SELECT COALESCE(sum(CASE WHEN x.side = 'BUY' THEN x.qty ELSE -x.qty END), 0)
           - COALESCE(sum(x.fee) FILTER (WHERE x.fee_asset = i.base_asset), 0)
    FROM fills x LEFT JOIN instruments i ON i.venue = x.venue AND i.symbol = x.symbol
    WHERE x.account = :account AND x.symbol = :symbol
    """
)

SQL_RECENT_SUBMISSIONS = Statement(
    """SELECT strategy_id, submitted_at FROM orders
    WHERE account = :account AND submitted_at > :since ORDER BY submitted_at"""
)
# percentile_disc keeps the NUMERIC type (percentile_cont would answer in float)
SQL_TYPICAL_ORDER_QTY = Statement(
    """
    SELECT strategy_id, symbol, percentile_disc(0.5) WITHIN GROUP (ORDER BY requested_qty),
           count(*)
    FROM (
        SELECT strategy_id, symbol, requested_qty,
               row_number() OVER (PARTITION BY strategy_id, symbol ORDER BY created_at DESC) AS rn
        FROM orders WHERE account = :account
    ) recent
    WHERE rn <= :depth
    GROUP BY strategy_id, symbol
    """
)


class RiskInputs(LedgerPart):
    """``ledger.risk_inputs``: positions and order history the risk checks start from."""

    async def net_positions(self) -> dict[tuple[StrategyId, Symbol], Decimal]:
        """Net quantity per (strategy, symbol) from the fills of the account's orders."""
        async with self._connection() as db:
            result = await SQL_NET_POSITIONS.run(db, {"account": self.account})
            return {(StrategyId(s), Symbol(sym)): qty for s, sym, qty in map(tuple, result)}

    async def account_position(self, symbol: Symbol) -> Decimal:
        """The account's net quantity in ``symbol`` from every fill, ours or not."""
        async with self._connection() as db:
            value = (
                await SQL_ACCOUNT_POSITION.run(db, {"account": self.account, "symbol": symbol})
            ).scalar()
        return Decimal(value)

    async def recent_submissions(self, since: datetime) -> dict[StrategyId, list[datetime]]:
        """When each strategy's orders were submitted after ``since`` (the order rate limit
        survives a restart)."""
        out: dict[StrategyId, list[datetime]] = {}
        async with self._connection() as db:
            for sid, at in map(tuple, await SQL_RECENT_SUBMISSIONS.run(
                db, {"account": self.account, "since": since}
            )):  # fmt: skip
                out.setdefault(StrategyId(sid), []).append(at)
        return out

    async def typical_order_qty(
        self, *, depth: int = 50
    ) -> dict[tuple[StrategyId, Symbol], tuple[Decimal, int]]:
        """Per (strategy, symbol): the median quantity of its last ``depth`` orders and how
        many orders that median is taken over."""
        async with self._connection() as db:
            rows = await SQL_TYPICAL_ORDER_QTY.run(db, {"account": self.account, "depth": depth})
            return {
                (StrategyId(s), Symbol(sym)): (Decimal(q), int(n))
                for s, sym, q, n in map(tuple, rows)
            }
