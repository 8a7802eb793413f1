"""Positions and resting exposure per strategy and symbol, from the ledger.

The ledger is the truth; this is a cache of it, refreshed when something changed (a
reservation, a fill), so the risk gate can stay synchronous and pure while it sees every fill
and every open order recorded before the batch it checks. Resting orders count: a position limit
that ignores them can be exceeded by the orders themselves. The fills are read once and then
only the new ones (engine.ledger.watermark): a refresh costs what changed, not the history.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, time
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.domain.positions import total_pnl
from engine.domain.risk import Exposure
from engine.domain.types import ClientOrderId, OrderState, Side, StrategyId, Symbol
from engine.ledger.db import database_errors
from engine.ledger.watermark import SNAPSHOT, Watermark
from engine.pnl_book import PnlBook, SymbolPnl
from engine.shared_read import SharedRead
from strategies.base import OpenOrder

_NON_TERMINAL = "('PENDING_SUBMIT', 'UNKNOWN', 'OPEN', 'PARTIALLY_FILLED', 'PENDING_CANCEL')"

# The resting part: only the non-terminal orders (ix_orders_non_terminal), each with the sum of
# its own fills (ix_fills_client_order_id_account): no history is scanned.
_OPEN_EXPOSURE = text(
    f"""
    SELECT strategy_id, symbol,
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

# The fills not read yet (engine.ledger.watermark): the position keeps only fills of orders the
# ledger knows (the ``positions`` view joins orders), the P&L every fill. The instrument as
# joined now: engines record their venue's instruments at startup, before any fill.
_NEW_FILLS = text(
    """
    SELECT f.id, f.venue, f.symbol, f.side, f.qty, f.price, f.fee, f.fee_asset, f.venue_ts,
           i.base_asset, i.quote_asset, o.strategy_id
    FROM fills f
    LEFT JOIN orders o ON o.client_order_id = f.client_order_id AND o.account = f.account
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    WHERE f.account = :account AND f.id > :f_after
      AND f.id NOT IN (SELECT unnest(CAST(:f_seen AS bigint[])))
    """
)
_NEW_SETTLEMENTS = text(
    """
    SELECT id, venue, symbol, payout, settled_at FROM settlements
    WHERE account = :account AND id > :s_after
      AND id NOT IN (SELECT unnest(CAST(:s_seen AS bigint[])))
    """
)
# The P&L fold of some symbols (or all) from every fill, in the fold's order.
_FOLD_COLUMNS = """
    SELECT f.id, f.venue, f.symbol, f.side, f.qty, f.price, f.fee, f.fee_asset, f.venue_ts,
           i.base_asset, i.quote_asset
    FROM fills f
    LEFT JOIN instruments i ON i.venue = f.venue AND i.symbol = f.symbol
    WHERE f.account = :account
"""
_FOLD_ALL = text(_FOLD_COLUMNS + " ORDER BY f.symbol, f.venue_ts, f.id")
_FOLD_SYMBOLS = text(
    _FOLD_COLUMNS
    + " AND f.symbol = ANY(CAST(:symbols AS text[])) ORDER BY f.symbol, f.venue_ts, f.id"
)

# Sums of the ledger's exact decimals: exact while the digits from the largest to the smallest
# quantity fit in 120 (the domain folds at 60), rather than raise and stop every refresh
_EXACT = Context(prec=120, traps=[InvalidOperation])


def _plus(a: Exposure, b: Exposure) -> Exposure:
    return Exposure(
        position=a.position + b.position,
        open_buy_qty=a.open_buy_qty + b.open_buy_qty,
        open_sell_qty=a.open_sell_qty + b.open_sell_qty,
    )


class Portfolio:
    """What the account holds, kept from the fills read since the last refresh (the history is
    read once, at the first refresh and after :meth:`forget`), and what rests on the venue,
    read at every refresh. A refresh's cost is its new fills', not the history's."""

    def __init__(self, engine: AsyncEngine, account: str) -> None:
        self._engine = engine
        self._account = account
        self._by_strategy: dict[tuple[StrategyId, Symbol], Exposure] = {}
        # Bumped by every change; a refresh clears "dirty" only if nothing changed while it
        # read, so a refresh that began before a write can never hide that write.
        self._generation = 1
        self._clean_generation = 0
        self._pnl: dict[Symbol, SymbolPnl] = {}
        self._pnl_generation = 0
        self._pnl_day: datetime | None = None
        self._open_orders = SharedRead(self._read_open_orders)
        # one reader at a time of the fills, so no fill is counted twice
        self._lock = asyncio.Lock()
        #: fill rows read from the ledger so far (the bench and tests read it)
        self.fills_read = 0
        self.forget()

    def forget(self) -> None:
        """Read the whole history again at the next refresh (after an outage, a takeover: a
        restored database, or a writer the watermark's argument does not cover)."""
        self._fills = Watermark()
        self._settlement_ids = Watermark()
        #: (strategy, symbol) -> net quantity of the fills read (base-asset fees netted)
        self._held: dict[tuple[StrategyId, Symbol], Decimal] = {}
        #: (venue, symbol) -> (payout, settled_at)
        self._settlements: dict[tuple[str, str], tuple[Decimal, datetime]] = {}
        self._book: PnlBook | None = None
        self._pnl_generation = 0
        self._generation += 1

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        # The ledger's own reads translate a lost connection; these must too, or an outage
        # would reach the strategies and the risk gate as SQLAlchemy's error, not an outage.
        with database_errors(self._engine.url):
            async with self._engine.connect() as conn:
                yield conn

    @property
    def account(self) -> str:
        return self._account

    def mark_dirty(self) -> None:
        self._generation += 1

    async def refresh(self) -> None:
        generation = self._generation
        await self._read(day=None, exposure=True)
        self._clean_generation = generation
        if self._book is not None:
            # the P&L kept is as fresh as the exposure: refresh_pnl has nothing more to read
            self._pnl_generation = generation

    async def _read(self, *, day: datetime | None, exposure: bool) -> None:
        """One snapshot (REPEATABLE READ): the fills and settlements not read yet, the open
        orders (``exposure``), and the P&L fold (for ``day``, or the day it is kept for)."""
        async with self._lock:
            try:
                async with self._connect() as conn:
                    await conn.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                    async with conn.begin():
                        await self._read_in(conn, day=day, exposure=exposure)
            except BaseException:
                # half applied, or a read that may have missed rows: start over
                self.forget()
                raise

    async def _read_in(
        self, conn: AsyncConnection, *, day: datetime | None, exposure: bool
    ) -> None:
        account = {"account": self._account}
        xmin, xmax = (await conn.execute(SNAPSHOT)).one()
        fills = (await conn.execute(_NEW_FILLS, {**account, **self._fills.params("f")})).all()
        settlements = (
            await conn.execute(_NEW_SETTLEMENTS, {**account, **self._settlement_ids.params("s")})
        ).all()
        self.fills_read += len(fills)
        with localcontext(_EXACT):
            for row in fills:
                if row.strategy_id is None:
                    continue
                key = (StrategyId(row.strategy_id), Symbol(row.symbol))
                qty = row.qty if row.side == Side.BUY.value else -row.qty
                if row.fee_asset is not None and row.fee_asset == row.base_asset:
                    qty -= row.fee
                self._held[key] = self._held.get(key, Decimal(0)) + qty
        for _, venue, symbol, payout, settled_at in settlements:
            self._settlements[(venue, symbol)] = (payout, settled_at)
        day = day or self._pnl_day
        if day is not None:
            await self._fold(conn, day, fills, settlements)
        if exposure:
            rows: dict[tuple[StrategyId, Symbol], Exposure] = {}
            settled = {symbol for _, symbol in self._settlements}
            for key, net in self._held.items():
                # a settled market's contracts are gone (paid out): no position any more
                if key[1] not in settled:
                    rows[key] = Exposure(position=net)
            result = await conn.execute(_OPEN_EXPOSURE, account)
            for strategy, symbol, open_buy, open_sell in result:
                key = (StrategyId(strategy), Symbol(symbol))
                rows[key] = _plus(
                    rows.get(key, Exposure()),
                    Exposure(open_buy_qty=Decimal(open_buy), open_sell_qty=Decimal(open_sell)),
                )
            self._by_strategy = rows
        self._fills.advance(xmin, xmax, (row.id for row in fills))
        self._settlement_ids.advance(xmin, xmax, (row.id for row in settlements))

    async def _fold(
        self, conn: AsyncConnection, day: datetime, fills: Sequence[Any], settlements: Any
    ) -> None:
        account = {"account": self._account}
        book = self._book
        if book is None or book.day != day:
            # the first P&L, or a new trading day (what was before it changed): every fill
            book = PnlBook(day, self._settlements)
            result = (await conn.execute(_FOLD_ALL, account)).all()
            self.fills_read += len(result)
            book.refold(result)
        else:
            stale = book.stale(fills)
            if stale:
                result = (
                    await conn.execute(_FOLD_SYMBOLS, {**account, "symbols": sorted(stale)})
                ).all()
                self.fills_read += len(result)
                book.refold(result)
            book.append(fills, stale)
            for row in settlements:
                book.settled_now(Symbol(row.symbol))
        self._book = book
        self._pnl = book.result
        self._pnl_day = day

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
        await self._read(day=day, exposure=False)
        self._pnl_generation = generation

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
