"""Fair-value taker for prediction markets (prices are probabilities in (0, 1)).

For each market: buy at the ask when the ask is below ``fair - edge``; sell at the bid when the bid
is above ``fair + edge`` and contracts are held. Orders are IOC limits at the touched price, sized
by ``qty``, by the size shown at the touch, and by the inventory cap (position plus pending buys
never beyond ``max_inventory``; never sells more than is held minus pending sells). One Hold with a
reason per market when it does nothing.

Params: ``fair`` (default fair value for every market), ``fair.<SYMBOL>`` (per-market override),
``edge`` (>= 0), ``qty`` (> 0), ``max_inventory`` (> 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from engine.domain.intents import Buy, Hold, Intent, Sell
from engine.domain.types import Side, StrategyId, Symbol, TimeInForce
from strategies.base import (
    DecisionMode,
    ParamError,
    Snapshot,
    param_decimal,
    reject_unknown,
)

_ZERO = Decimal(0)
_ONE = Decimal(1)


class FairValue:
    mode = DecisionMode.QUOTE
    bar_history = 0

    def __init__(
        self,
        strategy_id: StrategyId,
        fair: Mapping[Symbol, Decimal],
        *,
        edge: Decimal,
        qty: Decimal,
        max_inventory: Decimal,
    ) -> None:
        if not fair:
            raise ParamError("symbols", "fair_value needs at least one market")
        for symbol, value in fair.items():
            if not _ZERO < value < _ONE:
                raise ParamError(f"fair.{symbol}", f"must be inside (0, 1), got {value}")
        if edge < 0:
            raise ParamError("edge", f"must be >= 0, got {edge}")
        if qty <= 0:
            raise ParamError("qty", f"must be > 0, got {qty}")
        if max_inventory <= 0:
            raise ParamError("max_inventory", f"must be > 0, got {max_inventory}")
        self._strategy_id = strategy_id
        self.fair = dict(fair)
        self.edge = edge
        self.qty = qty
        self.max_inventory = max_inventory

    @property
    def strategy_id(self) -> StrategyId:
        return self._strategy_id

    @property
    def symbols(self) -> tuple[Symbol, ...]:
        return tuple(self.fair)

    def decide(self, snapshot: Snapshot) -> list[Intent]:
        return [self._decide_one(snapshot, symbol) for symbol in self.fair]

    def _decide_one(self, snapshot: Snapshot, symbol: Symbol) -> Intent:
        quote = snapshot.quotes.get(symbol)
        if quote is None:
            return self._hold(snapshot, symbol, "no quote yet")
        age = snapshot.now - quote.received_at
        if age > snapshot.limits.max_quote_age:
            return self._hold(
                snapshot,
                symbol,
                f"quote is stale: {age.total_seconds():.3f}s old, "
                f"limit {snapshot.limits.max_quote_age.total_seconds():.3f}s",
            )
        if not (_ZERO < quote.bid < _ONE and _ZERO < quote.ask < _ONE and quote.bid <= quote.ask):
            return self._hold(
                snapshot,
                symbol,
                f"quote outside (0, 1) or crossed: bid {quote.bid} ask {quote.ask}",
            )
        fair = self.fair[symbol]
        buy_below = fair - self.edge
        sell_above = fair + self.edge
        position = snapshot.position(symbol)
        limits = snapshot.limits

        if quote.ask < buy_below:
            cap = self.max_inventory
            if limits.max_position is not None:
                cap = min(cap, limits.max_position)
            room = cap - position - snapshot.pending(symbol, Side.BUY)
            size = _size(min(self.qty, quote.ask_size, room), quote.ask, snapshot)
            if size <= 0:
                return self._hold(
                    snapshot,
                    symbol,
                    f"ask {quote.ask} below {buy_below} but inventory {position} at cap {cap}",
                )
            return Buy(
                key=snapshot.key(symbol, Side.BUY),
                reason=f"ask {quote.ask} < fair {fair} - edge {self.edge}",
                md_ts=snapshot.md_ts,
                quantity=size,
                limit_price=quote.ask,
                time_in_force=TimeInForce.IOC,
            )
        if quote.bid > sell_above:
            held = position - snapshot.pending(symbol, Side.SELL)
            size = _size(min(self.qty, quote.bid_size, held), quote.bid, snapshot)
            if size <= 0:
                return self._hold(
                    snapshot, symbol, f"bid {quote.bid} above {sell_above} but nothing held to sell"
                )
            return Sell(
                key=snapshot.key(symbol, Side.SELL),
                reason=f"bid {quote.bid} > fair {fair} + edge {self.edge}",
                md_ts=snapshot.md_ts,
                quantity=size,
                limit_price=quote.bid,
                time_in_force=TimeInForce.IOC,
            )
        return self._hold(
            snapshot,
            symbol,
            f"no edge: bid {quote.bid} ask {quote.ask} inside [{buy_below}, {sell_above}]",
        )

    def _hold(self, snapshot: Snapshot, symbol: Symbol, reason: str) -> Hold:
        return Hold(key=snapshot.key(symbol, None), reason=reason, md_ts=snapshot.md_ts)


def _size(qty: Decimal, price: Decimal, snapshot: Snapshot) -> Decimal:
    limits = snapshot.limits
    if limits.max_order_qty is not None:
        qty = min(qty, limits.max_order_qty)
    if limits.max_order_notional is not None:
        qty = min(qty, limits.max_order_notional / price)
    return qty


def create(
    strategy_id: StrategyId, symbols: Sequence[Symbol], params: Mapping[str, str]
) -> FairValue:
    reject_unknown(params, {"fair", "edge", "qty", "max_inventory"}, prefixes=("fair.",))
    if not symbols:
        raise ParamError("symbols", "fair_value needs at least one market")
    default = params.get("fair")
    fair: dict[Symbol, Decimal] = {}
    for symbol in symbols:
        name = f"fair.{symbol}" if f"fair.{symbol}" in params else "fair"
        if name == "fair" and default is None:
            raise ParamError(f"fair.{symbol}", "is required (or give 'fair' for every market)")
        fair[symbol] = param_decimal(params, name, gt=_ZERO, lt=_ONE)
    for name in params:
        if name.startswith("fair.") and Symbol(name.removeprefix("fair.")) not in fair:
            raise ParamError(name, f"names a market not in symbols {list(symbols)}")
    return FairValue(
        strategy_id,
        fair,
        edge=param_decimal(params, "edge", ge=_ZERO),
        qty=param_decimal(params, "qty", gt=_ZERO),
        max_inventory=param_decimal(params, "max_inventory", gt=_ZERO),
    )
