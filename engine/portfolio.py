"""Positions and resting exposure per strategy and symbol, read from the ledger.

The ledger is the truth; this is a cache of it, refreshed by one query when something changed
(a reservation, a fill), so the risk gate can stay synchronous and pure while it sees every fill
and every open order recorded before the batch it checks. Resting orders count: a position limit
that ignores them can be exceeded by the orders themselves.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.domain.positions import Position, PositionFill, apply_fill, settle, total_pnl
from engine.domain.risk import Exposure
from engine.domain.types import Asset, ClientOrderId, OrderState, Side, StrategyId, Symbol
from engine.ledger.db import database_errors
from engine.shared_read import SharedRead
from strategies.base import OpenOrder

_NON_TERMINAL = "('PENDING_SUBMIT', 'UNKNOWN', 'OPEN', 'PARTIALLY_FILLED', 'PENDING_CANCEL')"

_EXPOSURE = text(
    f"""
    SELECT strategy_id, symbol, sum(net_qty) AS net_qty, 0 AS open_buy, 0 AS open_sell
    FROM positions p
    WHERE account = :account
      -- a settled market's contracts are gone (paid out): they are no position any more
      AND NOT EXISTS (
          SELECT 1 FROM settlements s WHERE s.account = p.account AND s.symbol = p.symbol
      )
    GROUP BY strategy_id, symbol
    UNION ALL
    SELECT strategy_id, symbol, 0,
           COALESCE(sum(remaining_qty) FILTER (WHERE side = 'BUY'), 0),
           COALESCE(sum(remaining_qty) FILTER (WHERE side = 'SELL'), 0)
    FROM order_status
    WHERE account = :account AND state IN {_NON_TERMINAL}
    GROUP BY strategy_id, symbol
    """
)
# Every strategy's at once: the strategies deciding on one bar share one read (SharedRead)
_OPEN_ORDERS = text(
    f"""
    SELECT strategy_id, client_order_id, symbol, side, requested_qty, filled_qty, limit_price,
           state
    FROM order_status
    WHERE account = :account AND state IN {_NON_TERMINAL}
    ORDER BY client_order_id
    """
)


# A settled market (engine.settlement) closes its position at the payout: its settlement
# comes with every fill row of the symbol, and is applied after the last one.
_PNL_FILLS = text(
    """
    SELECT f.symbol, f.side, f.qty, f.price, f.fee, f.fee_asset, f.venue_ts,
           i.base_asset, i.quote_asset, s.payout, s.settled_at
    FROM fills f
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    LEFT JOIN settlements s
        ON s.account = f.account AND s.venue = f.venue AND s.symbol = f.symbol
    WHERE f.account = :account
    ORDER BY f.symbol, f.venue_ts, f.id
    """
)


@dataclass(frozen=True, slots=True, kw_only=True)
class _SymbolPnl:
    #: every fill folded (``None`` when the symbol's assets are unknown: no instrument row)
    position: Position | None
    #: realized P&L of the fills before the trading day began
    realized_before_today: Decimal


def _settled(
    position: Position | None,
    before: Decimal,
    settlement: tuple[Decimal, datetime] | None,
    day: datetime,
) -> _SymbolPnl:
    """The symbol's fold, closed at its settlement payout when its market settled: the payout
    minus the cost is realized then (today's P&L when it settled today, else before it)."""
    if position is None or settlement is None:
        return _SymbolPnl(position=position, realized_before_today=before)
    payout, settled_at = settlement
    position = settle(position, payout)
    if settled_at < day:
        before = position.realized_pnl
    return _SymbolPnl(position=position, realized_before_today=before)


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
        self._pnl: dict[Symbol, _SymbolPnl] = {}
        self._pnl_generation = 0
        self._pnl_day: datetime | None = None
        self._open_orders = SharedRead(self._read_open_orders)

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        # The ledger's own reads translate a lost connection; these must too, or an outage
        # would reach the strategies and the risk gate as SQLAlchemy's error, not an outage.
        with database_errors(self._engine.url):
            async with self._engine.connect() as conn:
                yield conn

    def mark_dirty(self) -> None:
        self._generation += 1

    async def refresh(self) -> None:
        generation = self._generation
        rows: dict[tuple[StrategyId, Symbol], Exposure] = defaultdict(Exposure)
        async with self._connect() as conn:
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

    # -- P&L for the loss limits ---------------------------------------------------------------

    async def refresh_pnl(self, now: datetime, *, day_start: datetime | None = None) -> None:
        """Fold the account's fills into positions, each closed at its market's settlement payout
        when it settled (when fills or settlements changed: :meth:`mark_dirty`, or the day
        rolled).

        The trading day starts at ``day_start`` (00:00 UTC of ``now`` by default). Today's P&L
        here is today's realized P&L plus the unrealized P&L of what is held now, valued
        against its average entry (a carried position counts its whole open P&L); the risk
        gate measures from the stored day-start mark instead
        (:mod:`engine.domain.risk.loss_marks`) and uses :meth:`day_start_pnl` only when a day
        began unobserved.
        """
        day = day_start or datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)
        if self._pnl_generation == self._generation and self._pnl_day == day:
            return
        generation = self._generation
        by_symbol: dict[Symbol, _SymbolPnl] = {}
        async with self._connect() as conn:
            result = await conn.execute(_PNL_FILLS, {"account": self._account})
            current: Symbol | None = None
            position: Position | None = None
            before = Decimal(0)
            settlement: tuple[Decimal, datetime] | None = None
            for row in result:
                symbol, side, qty, price, fee, fee_asset, venue_ts, base, quote = row[:9]
                if symbol != current:
                    if current is not None:
                        by_symbol[current] = _settled(position, before, settlement, day)
                    current, before = Symbol(symbol), Decimal(0)
                    settlement = None if row.payout is None else (row.payout, row.settled_at)
                    position = (
                        None
                        if base is None
                        else Position(
                            base_asset=Asset(base), quote_asset=Asset(quote), symbol=current
                        )
                    )
                if position is None:
                    continue
                position = apply_fill(
                    position,
                    PositionFill(
                        side=Side(side),
                        qty=qty,
                        price=price,
                        fee=fee,
                        fee_asset=None if fee_asset is None else Asset(fee_asset),
                    ),
                )
                if venue_ts < day:
                    before = position.realized_pnl
            if current is not None:
                by_symbol[current] = _settled(position, before, settlement, day)
        self._pnl = by_symbol
        self._pnl_generation = generation
        self._pnl_day = day

    def pnl(
        self, mark: Callable[[Symbol], Decimal | None], now: datetime
    ) -> tuple[Decimal, Decimal] | None:
        """``(today's P&L, cumulative P&L)`` in the quote asset at the given marks; ``None``
        when a held position has no mark or unknown assets (the checks then reject as
        missing, never pass). Quote assets are summed as one currency: the account's limits
        are in it."""
        del now  # the day boundary was applied by refresh_pnl
        today = cumulative = Decimal(0)
        for state in self._pnl.values():
            position = state.position
            if position is None:
                return None
            price = Decimal(0)
            if not position.is_flat:
                found = mark(position.symbol) if position.symbol is not None else None
                if found is None:
                    return None
                price = found
            total = total_pnl(position, price)
            cumulative += total
            today += total - state.realized_before_today
        return today, cumulative

    def day_start_pnl(self, mark: Callable[[Symbol], Decimal | None]) -> Decimal | None:
        """The best estimate of the cumulative P&L at the day's start when nobody saw it: what
        was realized before the day, plus what is held now valued at ``mark`` (so today's
        realized P&L counts in full, the open P&L from the first look)."""
        total = Decimal(0)
        for state in self._pnl.values():
            position = state.position
            if position is None:
                return None
            price = Decimal(0)
            if not position.is_flat:
                found = mark(position.symbol) if position.symbol is not None else None
                if found is None:
                    return None
                price = found
            unrealized = total_pnl(position, price) - position.realized_pnl
            total += state.realized_before_today + unrealized
        return total

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
        """The strategy's non-terminal orders, from a read that began after this call."""
        return (await self._open_orders()).get(strategy_id, ())

    async def _read_open_orders(self) -> dict[StrategyId, tuple[OpenOrder, ...]]:
        by_strategy: dict[StrategyId, list[OpenOrder]] = defaultdict(list)
        async with self._connect() as conn:
            result = await conn.execute(_OPEN_ORDERS, {"account": self._account})
            for sid, coid, symbol, side, qty, filled, price, state in result:
                by_strategy[StrategyId(sid)].append(
                    OpenOrder(
                        client_order_id=ClientOrderId(coid),
                        symbol=Symbol(symbol),
                        side=Side(side),
                        quantity=Decimal(qty),
                        filled_quantity=Decimal(filled),
                        limit_price=None if price is None else Decimal(price),
                        state=OrderState(state),
                    )
                )
        return {sid: tuple(orders) for sid, orders in by_strategy.items()}
