"""The account's P&L fold per symbol, advanced by the fills read since the last refresh.

The fold is path-dependent (a partial close realizes against the average of what is still
open), so it must see a symbol's fills in (venue time, id) order, as the full read did. New
fills almost always come after the ones folded; one that sorts before the last folded fill of
its symbol (the venue's time out of order, a late-recorded fill) sends the symbol back to be
folded again from all its fills. The result is the full fold's, exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine.domain.positions import Position, PositionFill, apply_fill, settle
from engine.domain.types import Asset, Side, Symbol


@dataclass(frozen=True, slots=True, kw_only=True)
class SymbolPnl:
    #: every fill folded (``None`` when the symbol's assets are unknown: no instrument row)
    position: Position | None
    #: realized P&L of the fills before the trading day began
    realized_before_today: Decimal


@dataclass(slots=True)
class _Fold:
    #: the venue of the symbol's first fill: its settlement is looked up there
    venue: str
    position: Position | None
    before: Decimal
    #: (venue time, id) of the last fill folded
    last: tuple[datetime, int]


def settled(
    position: Position | None,
    before: Decimal,
    settlement: tuple[Decimal, datetime] | None,
    day: datetime,
) -> SymbolPnl:
    """The symbol's fold, closed at its settlement payout when its market settled: the payout
    minus the cost is realized then (today's P&L when it settled today, else before it)."""
    if position is None or settlement is None:
        return SymbolPnl(position=position, realized_before_today=before)
    payout, settled_at = settlement
    position = settle(position, payout)
    if settled_at < day:
        before = position.realized_pnl
    return SymbolPnl(position=position, realized_before_today=before)


class PnlBook:
    """Rows are ``(id, venue, symbol, side, qty, price, fee, fee_asset, venue_ts, base_asset,
    quote_asset)`` (the instrument's assets as joined when read)."""

    def __init__(
        self, day: datetime, settlements: Mapping[tuple[str, str], tuple[Decimal, datetime]]
    ) -> None:
        self.day = day
        self._folds: dict[Symbol, _Fold] = {}
        #: (venue, symbol) -> (payout, settled_at): the account's, kept by the owner
        self._settlements = settlements
        self.result: dict[Symbol, SymbolPnl] = {}

    def settled_now(self, symbol: Symbol) -> None:
        """A settlement of the symbol was read: close its fold at the payout."""
        if symbol in self._folds:
            self._publish(symbol)

    def stale(self, rows: Iterable[Any]) -> set[Symbol]:
        """The symbols these new rows cannot be appended to: fold them again from all their
        fills (:meth:`refold`), then :meth:`append` the other rows."""
        out: set[Symbol] = set()
        for row in rows:
            fold = self._folds.get(Symbol(row[2]))
            if fold is not None and (fold.position is None or (row[8], row[0]) < fold.last):
                # before the last folded (order), or a symbol whose instrument was unknown and
                # may be known now: its fills again, in order
                out.add(Symbol(row[2]))
        return out

    def refold(self, rows: Iterable[Any]) -> None:
        """Every fill of the symbols in ``rows``, ordered by (symbol, venue time, id)."""
        touched: set[Symbol] = set()
        for row in rows:
            symbol = Symbol(row[2])
            if symbol not in touched:
                touched.add(symbol)
                self._folds.pop(symbol, None)
            self._fold(row)
        for symbol in touched:
            self._publish(symbol)

    def append(self, rows: Iterable[Any], skip: set[Symbol]) -> None:
        """New fills (any order), but those of the symbols in ``skip`` (just refolded)."""
        touched: set[Symbol] = set()
        for row in sorted(
            (r for r in rows if Symbol(r[2]) not in skip), key=lambda r: (r[2], r[8], r[0])
        ):
            touched.add(Symbol(row[2]))
            self._fold(row)
        for symbol in touched:
            self._publish(symbol)

    def _fold(self, row: Any) -> None:
        fill_id, venue, symbol, side, qty, price, fee, fee_asset, venue_ts, base, quote = row[:11]
        fold = self._folds.get(Symbol(symbol))
        if fold is None:
            position = (
                None
                if base is None
                else Position(base_asset=Asset(base), quote_asset=Asset(quote), symbol=symbol)
            )
            fold = self._folds[Symbol(symbol)] = _Fold(
                venue=venue, position=position, before=Decimal(0), last=(venue_ts, fill_id)
            )
        fold.last = (venue_ts, fill_id)
        if fold.position is None:
            return
        fold.position = apply_fill(
            fold.position,
            PositionFill(
                side=Side(side),
                qty=qty,
                price=price,
                fee=fee,
                fee_asset=None if fee_asset is None else Asset(fee_asset),
            ),
        )
        if venue_ts < self.day:
            fold.before = fold.position.realized_pnl

    def _publish(self, symbol: Symbol) -> None:
        fold = self._folds[symbol]
        self.result[symbol] = settled(
            fold.position, fold.before, self._settlements.get((fold.venue, symbol)), self.day
        )
