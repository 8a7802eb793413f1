"""Pairing a paper run's trades with a replay's, and the difference per trade. Pure.

A *trade* here is one order's fills: its quantity, its average price and the time of its first
fill. The two sides are paired by client order id: both derive it from the decision key, so the
same decision in both runs is the same id.

Tolerance (what "the same trade" means, defaults of ``tradectl compare``):

- price: within ``price_bps`` (5 bps) of the paper trade's average price. The paper run's order
  meets the market a few milliseconds after the replay's (the ledger's reserve transaction before
  the wire), and the quote may move in between.
- quantity: within ``qty_fraction`` (1 %) of the paper quantity: a partial fill by participation
  depends on which trades print while the order rests.
- time: within ``time_s`` (2 s): the paper run decides when its bar closes by the next quote or by
  its once-a-second housekeeping, the replay at the next recorded event.

A trade on one side only is a difference whatever the tolerance.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from engine.domain.types import ClientOrderId, Side, StrategyId, Symbol

_BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class Trade:
    client_order_id: ClientOrderId
    strategy_id: StrategyId
    symbol: Symbol
    side: Side
    quantity: Decimal
    price: Decimal
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Tolerance:
    price_bps: Decimal = Decimal(5)
    qty_fraction: Decimal = Decimal("0.01")
    time_s: Decimal = Decimal(2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    paper: Trade | None
    backtest: Trade | None
    price_bps: Decimal | None = None
    qty: Decimal | None = None
    time_s: Decimal | None = None
    within: bool = False

    @property
    def trade(self) -> Trade:
        found = self.paper or self.backtest
        assert found is not None
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    rows: tuple[Row, ...]
    tolerance: Tolerance

    @property
    def matched(self) -> int:
        return sum(1 for r in self.rows if r.paper and r.backtest)

    @property
    def outside(self) -> int:
        return sum(1 for r in self.rows if not r.within)

    @property
    def agree(self) -> bool:
        return self.outside == 0


def compare(paper: Iterable[Trade], backtest: Iterable[Trade], tolerance: Tolerance) -> Comparison:
    """Every trade of either side, paired by client order id, in time order."""
    ours = {t.client_order_id: t for t in paper}
    theirs = {t.client_order_id: t for t in backtest}
    rows: list[Row] = []
    for coid in ours.keys() | theirs.keys():
        p, b = ours.get(coid), theirs.get(coid)
        if p is None or b is None:
            rows.append(Row(paper=p, backtest=b))
            continue
        price_bps = (b.price - p.price) / p.price * _BPS
        qty = b.quantity - p.quantity
        time_s = Decimal(str((b.at - p.at).total_seconds()))
        within = (
            p.side is b.side
            and abs(price_bps) <= tolerance.price_bps
            and abs(qty) <= tolerance.qty_fraction * p.quantity
            and abs(time_s) <= tolerance.time_s
        )
        rows.append(
            Row(paper=p, backtest=b, price_bps=price_bps, qty=qty, time_s=time_s, within=within)
        )
    rows.sort(key=lambda r: (r.trade.at, r.trade.client_order_id))
    return Comparison(rows=tuple(rows), tolerance=tolerance)


def aggregate(
    fills: Sequence[tuple[ClientOrderId, StrategyId, Symbol, Side, Decimal, Decimal, datetime]],
) -> list[Trade]:
    """One trade per order from its fills ``(coid, strategy, symbol, side, qty, price, at)``."""
    by_order: dict[ClientOrderId, list[tuple[Decimal, Decimal, datetime]]] = {}
    meta: dict[ClientOrderId, tuple[StrategyId, Symbol, Side]] = {}
    for coid, strategy, symbol, side, qty, price, at in fills:
        by_order.setdefault(coid, []).append((qty, price, at))
        meta[coid] = (strategy, symbol, side)
    trades = []
    for coid, parts in by_order.items():
        quantity = sum((q for q, _, _ in parts), Decimal(0))
        if quantity <= 0:
            continue
        strategy, symbol, side = meta[coid]
        trades.append(
            Trade(
                client_order_id=coid,
                strategy_id=strategy,
                symbol=symbol,
                side=side,
                quantity=quantity,
                price=sum((q * p for q, p, _ in parts), Decimal(0)) / quantity,
                at=min(at for _, _, at in parts),
            )
        )
    return trades
