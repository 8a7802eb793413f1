"""What the metrics read from the ledger: orders by state, and new fills with the strategy
that placed them (folded into P&L by :mod:`engine.account_gauges`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from engine.domain.types import Asset, OrderState, Side, StrategyId, Symbol
from engine.ledger.part import LedgerPart
from engine.ledger.schema import NON_TERMINAL_STATES
from engine.ledger.statements import Statement

#: fills read per query while catching up (the first pass reads the account's history)
FILLS_PAGE = 5000
_WORKING = ", ".join(f"'{s.value}'" for s in NON_TERMINAL_STATES)

# The partial index on working orders serves this: its cost follows the orders in flight, not
# the account's history.
SQL_WORKING_ORDERS = Statement(
    f"""
    SELECT state, count(*) AS orders, min(created_at) AS oldest
    FROM orders WHERE account = :account AND state IN ({_WORKING})
    GROUP BY state
    """
)
# Every order of the account: a scan of its history, so the caller runs it rarely.
SQL_ALL_ORDERS = Statement(
    """
    SELECT state, count(*) AS orders, min(created_at) AS oldest
    FROM orders WHERE account = :account
    GROUP BY state
    """
)

# Fills of the account's own orders after a fill id, in recording order, with the strategy and
# the symbol's assets (a fill of an unknown symbol has none: it cannot be valued).
SQL_FILLS_AFTER = Statement(
    """
    SELECT f.id, o.strategy_id, f.symbol, f.side, f.qty, f.price, f.fee, f.fee_asset,
           i.base_asset, i.quote_asset
    FROM fills f
    JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    WHERE f.account = :account AND f.id > :after
    ORDER BY f.id
    LIMIT :limit
    """
)


@dataclass(frozen=True, slots=True, kw_only=True)
class OrdersInState:
    count: int
    #: when the oldest order in this state was reserved
    oldest: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyFill:
    id: int
    strategy_id: StrategyId
    symbol: Symbol
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: Asset | None
    base_asset: Asset | None
    quote_asset: Asset | None


class Monitoring(LedgerPart):
    """Reads for the metrics; never writes."""

    async def orders_by_state(self, *, working_only: bool) -> dict[OrderState, OrdersInState]:
        """Per state, how many orders and when the oldest was reserved; only the non-terminal
        states with ``working_only`` (cheap), else every state (a scan of the history)."""
        sql = SQL_WORKING_ORDERS if working_only else SQL_ALL_ORDERS
        async with self._connection() as db:
            result = await sql.run(db, {"account": self.account})
            return {
                OrderState(r["state"]): OrdersInState(count=r["orders"], oldest=r["oldest"])
                for r in result
            }

    async def fills_after(self, after: int, *, limit: int = FILLS_PAGE) -> list[StrategyFill]:
        async with self._connection() as db:
            result = await SQL_FILLS_AFTER.run(
                db, {"account": self.account, "after": after, "limit": limit}
            )
            return [
                StrategyFill(
                    id=r["id"],
                    strategy_id=StrategyId(r["strategy_id"]),
                    symbol=Symbol(r["symbol"]),
                    side=Side(r["side"]),
                    qty=r["qty"],
                    price=r["price"],
                    fee=r["fee"],
                    fee_asset=None if r["fee_asset"] is None else Asset(r["fee_asset"]),
                    base_asset=None if r["base_asset"] is None else Asset(r["base_asset"]),
                    quote_asset=None if r["quote_asset"] is None else Asset(r["quote_asset"]),
                )
                for r in result
            ]
