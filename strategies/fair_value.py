"""Fair-value taker for prediction markets (prices are probabilities in (0, 1)).

For each market: buy at the ask when the ask is below ``fair - edge``; sell at the bid when the bid
is above ``fair + edge`` and contracts are held. Orders are IOC limits at the touched price, sized
by ``qty``, by the size shown at the touch, and by the inventory cap (position plus pending buys
never beyond ``max_inventory``; never sells more than is held minus pending sells). One Hold with a
reason per market when it does nothing.

Params (:class:`Params`): ``fair`` (default fair value for every market), ``fair.<SYMBOL>``
(per-market override), ``edge`` (>= 0), ``qty`` (> 0), ``max_inventory`` (> 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from engine.domain.intents import Buy, Hold, Intent, Sell
from engine.domain.types import Side, StrategyId, Symbol, TimeInForce
from strategies.base import DecisionMode, ParamError, Snapshot, param_decimal, reject_unknown
from strategies.params import parse_params

#: bumped when a change to the code changes what it decides (recorded with each decision)
version = "1"

_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUGE = Decimal("1e18")


class Params(BaseModel):
    # ``fair.<SYMBOL>`` overrides are checked by :func:`create`: their names depend on the symbols
    model_config = ConfigDict(extra="allow", frozen=True)

    fair: Decimal | None = Field(
        None, gt=0, lt=1, allow_inf_nan=False, description="fair value of every market, in (0, 1)"
    )
    edge: Decimal = Field(
        Decimal("0.02"), ge=0, lt=1, allow_inf_nan=False, description="distance from fair to trade"
    )
    qty: Decimal = Field(
        Decimal(10), gt=0, lt=_HUGE, allow_inf_nan=False, description="contracts per order"
    )
    max_inventory: Decimal = Field(
        Decimal(100), gt=0, lt=_HUGE, allow_inf_nan=False, description="largest inventory"
    )


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
        return snapshot.hold(symbol, reason)


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
    reject_unknown(params, set(Params.model_fields), prefixes=("fair.",))
    overrides = {k: v for k, v in params.items() if k.startswith("fair.")}
    parsed = parse_params(Params, {k: v for k, v in params.items() if k not in overrides})
    if not symbols:
        raise ParamError("symbols", "fair_value needs at least one market")
    fair: dict[Symbol, Decimal] = {}
    for symbol in symbols:
        name = f"fair.{symbol}"
        if name in overrides:
            fair[symbol] = param_decimal(overrides, name, gt=_ZERO, lt=_ONE)
        elif parsed.fair is None:
            raise ParamError(name, "is required (or give 'fair' for every market)")
        else:
            fair[symbol] = parsed.fair
    for name in overrides:
        if Symbol(name.removeprefix("fair.")) not in fair:
            raise ParamError(name, f"names a market not in symbols {list(symbols)}")
    return FairValue(
        strategy_id, fair, edge=parsed.edge, qty=parsed.qty, max_inventory=parsed.max_inventory
    )
