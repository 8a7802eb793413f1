"""Churn: trades every decision window, deterministically from market data (for the chaos suite).

Each window it first cancels every resting order it has, then places one limit order, so a run
exercises submits, immediate and later fills, partial fills, and cancels in a steady stream. What
it places depends only on the window (a checksum of the interval key) and on its inventory:

- side: buy while the position plus pending buys is below ``max_position`` and either the
  window says "buy" or a sell would take the position below ``min_position``; otherwise sell
  (never below ``min_position``: 0, never short, unless told; on a prediction market a short
  YES position is a NO position);
- style, cycling through the windows: an IOC at the far touch (takes and ends), a GTC at the far
  touch (takes what is shown, rests the rest), a GTC at the near touch (rests until the market
  moves through it, or the next window cancels it).

Params (:class:`Params`): ``qty`` (base units per order, > 0), ``max_position`` (> 0),
``min_position`` (<= 0, default 0). Not a
trading idea: a load generator whose every decision a replay reproduces.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from engine.domain.intents import Buy, Cancel, Hold, Intent, Sell
from engine.domain.types import OrderState, Side, StrategyId, Symbol, TimeInForce
from strategies.base import DecisionMode, ParamError, Snapshot
from strategies.params import parse_params

#: bumped when a change to the code changes what it decides (recorded with each decision)
version = "1"

_ZERO = Decimal(0)
#: only acknowledged orders are cancelled: an unresolved one is the engine's to settle first
_CANCELLABLE = frozenset({OrderState.OPEN, OrderState.PARTIALLY_FILLED})


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    qty: Decimal = Field(
        Decimal("0.001"),
        gt=0,
        lt=Decimal("1e18"),
        allow_inf_nan=False,
        description="base units per order",
    )
    max_position: Decimal = Field(
        Decimal("0.01"),
        gt=0,
        lt=Decimal("1e18"),
        allow_inf_nan=False,
        description="largest position",
    )
    min_position: Decimal = Field(
        Decimal(0),
        le=0,
        gt=Decimal("-1e18"),
        allow_inf_nan=False,
        description="smallest position (below 0: sells go short)",
    )


class Churn:
    mode = DecisionMode.QUOTE
    bar_history = 0

    def __init__(
        self,
        strategy_id: StrategyId,
        symbols: Sequence[Symbol],
        *,
        qty: Decimal,
        max_position: Decimal,
        min_position: Decimal = _ZERO,
    ) -> None:
        if not symbols:
            raise ParamError("symbols", "churn needs at least one symbol")
        if qty <= 0:
            raise ParamError("qty", f"must be > 0, got {qty}")
        if max_position <= 0:
            raise ParamError("max_position", f"must be > 0, got {max_position}")
        if min_position > 0:
            raise ParamError("min_position", f"must be <= 0, got {min_position}")
        self._strategy_id = strategy_id
        self._symbols = tuple(symbols)
        self.qty = qty
        self.max_position = max_position
        self.min_position = min_position

    @property
    def strategy_id(self) -> StrategyId:
        return self._strategy_id

    @property
    def symbols(self) -> tuple[Symbol, ...]:
        return self._symbols

    def decide(self, snapshot: Snapshot) -> list[Intent]:
        intents: list[Intent] = []
        for symbol in self._symbols:
            intents.extend(self._decide_one(snapshot, symbol))
        return intents

    def _decide_one(self, snapshot: Snapshot, symbol: Symbol) -> list[Intent]:
        out: list[Intent] = [
            Cancel(
                key=snapshot.key(symbol, None),
                reason=f"churn: replace resting {order.side.value} {order.remaining}",
                md_ts=snapshot.md_ts,
                client_order_id=order.client_order_id,
            )
            for order in snapshot.open_orders
            if order.symbol == symbol and order.state in _CANCELLABLE
        ]
        quote = snapshot.quotes.get(symbol)
        if quote is None:
            return out or [self._hold(snapshot, symbol, "no quote yet")]
        age = snapshot.now - quote.received_at
        if age > snapshot.limits.max_quote_age:
            return out or [self._hold(snapshot, symbol, f"quote is stale: {age} old")]
        if quote.bid <= 0 or quote.ask <= quote.bid:
            return out or [
                self._hold(snapshot, symbol, f"no two-sided market: {quote.bid}/{quote.ask}")
            ]
        window = zlib.crc32(f"{symbol}|{snapshot.interval_key}".encode())
        position = snapshot.position(symbol)
        room = self.max_position - position - snapshot.pending(symbol, Side.BUY)
        held = position - snapshot.pending(symbol, Side.SELL) - self.min_position
        wants_buy = window % 2 == 0 or held < self.qty
        style = window // 2 % 3
        if wants_buy and room >= self.qty:
            price = quote.bid if style == 2 else quote.ask
            out.append(self._order(Buy, snapshot, symbol, Side.BUY, price, style))
        elif held >= self.qty:
            price = quote.ask if style == 2 else quote.bid
            out.append(self._order(Sell, snapshot, symbol, Side.SELL, price, style))
        elif not out:
            out.append(self._hold(snapshot, symbol, f"position {position}: no room either way"))
        return out

    def _order(
        self,
        kind: type[Buy] | type[Sell],
        snapshot: Snapshot,
        symbol: Symbol,
        side: Side,
        price: Decimal,
        style: int,
    ) -> Intent:
        tif = TimeInForce.IOC if style == 0 else TimeInForce.GTC
        where = "near touch, resting" if style == 2 else f"far touch, {tif.value}"
        return kind(
            key=snapshot.key(symbol, side),
            reason=f"churn: {side.value} {self.qty} at {price} ({where})",
            md_ts=snapshot.md_ts,
            quantity=self.qty,
            limit_price=price,
            time_in_force=tif,
        )

    def _hold(self, snapshot: Snapshot, symbol: Symbol, reason: str) -> Hold:
        return snapshot.hold(symbol, f"churn: {reason}")


def create(strategy_id: StrategyId, symbols: Sequence[Symbol], params: Mapping[str, str]) -> Churn:
    parsed = parse_params(Params, params)
    return Churn(
        strategy_id,
        symbols,
        qty=parsed.qty,
        max_position=parsed.max_position,
        min_position=parsed.min_position,
    )
