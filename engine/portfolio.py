"""Positions and resting exposure per strategy and symbol, read from the ledger.

The ledger is the truth; this is a cache of it, refreshed by one query when something changed
(a reservation, a fill), so the risk gate can stay synchronous and pure while it sees every fill
and every open order recorded before the batch it checks. Resting orders count: a position limit
that ignores them can be exceeded by the orders themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.risk import Exposure
from engine.domain.types import ClientOrderId, OrderState, Side, StrategyId, Symbol
from strategies.base import OpenOrder

_NON_TERMINAL = "('PENDING_SUBMIT', 'UNKNOWN', 'OPEN', 'PARTIALLY_FILLED', 'PENDING_CANCEL')"

_EXPOSURE = text(
    f"""
    SELECT strategy_id, symbol, sum(net_qty) AS net_qty, 0 AS open_buy, 0 AS open_sell
    FROM positions WHERE account = :account GROUP BY strategy_id, symbol
    UNION ALL
    SELECT strategy_id, symbol, 0,
           COALESCE(sum(remaining_qty) FILTER (WHERE side = 'BUY'), 0),
           COALESCE(sum(remaining_qty) FILTER (WHERE side = 'SELL'), 0)
    FROM order_status
    WHERE account = :account AND state IN {_NON_TERMINAL}
    GROUP BY strategy_id, symbol
    """
)
_OPEN_ORDERS = text(
    f"""
    SELECT client_order_id, symbol, side, requested_qty, filled_qty, limit_price, state
    FROM order_status
    WHERE account = :account AND strategy_id = :strategy AND state IN {_NON_TERMINAL}
    ORDER BY client_order_id
    """
)


def _plus(a: Exposure, b: Exposure) -> Exposure:
    return Exposure(
        position=a.position + b.position,
        open_buy_qty=a.open_buy_qty + b.open_buy_qty,
        open_sell_qty=a.open_sell_qty + b.open_sell_qty,
    )


class Portfolio:
    def __init__(self, engine: AsyncEngine, account: str) -> None:
        self._engine = engine
        self._account = account
        self._by_strategy: dict[tuple[StrategyId, Symbol], Exposure] = {}
        # Bumped by every change; a refresh clears "dirty" only if nothing changed while it
        # read, so a refresh that began before a write can never hide that write.
        self._generation = 1
        self._clean_generation = 0

    def mark_dirty(self) -> None:
        self._generation += 1

    async def refresh(self) -> None:
        generation = self._generation
        rows: dict[tuple[StrategyId, Symbol], Exposure] = defaultdict(Exposure)
        async with self._engine.connect() as conn:
            result = await conn.execute(_EXPOSURE, {"account": self._account})
            for strategy, symbol, net, open_buy, open_sell in result:
                key = (StrategyId(strategy), Symbol(symbol))
                rows[key] = _plus(
                    rows[key],
                    Exposure(
                        position=Decimal(net),
                        open_buy_qty=Decimal(open_buy),
                        open_sell_qty=Decimal(open_sell),
                    ),
                )
        self._by_strategy = dict(rows)
        self._clean_generation = generation

    @property
    def dirty(self) -> bool:
        return self._clean_generation != self._generation

    @property
    def generation(self) -> int:
        """Changes whenever something the ledger holds may have changed."""
        return self._generation

    async def refresh_if_dirty(self) -> None:
        if self.dirty:
            await self.refresh()

    def snapshot(self) -> dict[tuple[StrategyId, Symbol], Exposure]:
        return dict(self._by_strategy)

    def strategy_exposures(self, strategy: StrategyId) -> dict[Symbol, Exposure]:
        return {sym: e for (sid, sym), e in self._by_strategy.items() if sid == strategy}

    def account_exposures(self) -> dict[Symbol, Exposure]:
        out: dict[Symbol, Exposure] = defaultdict(Exposure)
        for (_, symbol), exposure in self._by_strategy.items():
            out[symbol] = _plus(out[symbol], exposure)
        return dict(out)

    # -- strategy_host.PortfolioProvider -----------------------------------------------------

    async def inventory(self, strategy_id: StrategyId) -> Mapping[Symbol, Decimal]:
        await self.refresh_if_dirty()
        return {
            symbol: exposure.position
            for symbol, exposure in self.strategy_exposures(strategy_id).items()
            if exposure.position != 0
        }

    async def open_orders(self, strategy_id: StrategyId) -> Sequence[OpenOrder]:
        async with self._engine.connect() as conn:
            result = await conn.execute(
                _OPEN_ORDERS, {"account": self._account, "strategy": strategy_id}
            )
            return [
                OpenOrder(
                    client_order_id=ClientOrderId(coid),
                    symbol=Symbol(symbol),
                    side=Side(side),
                    quantity=Decimal(qty),
                    filled_quantity=Decimal(filled),
                    limit_price=None if price is None else Decimal(price),
                    state=OrderState(state),
                )
                for coid, symbol, side, qty, filled, price, state in result
            ]
