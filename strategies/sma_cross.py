"""SMA crossover on closed bars, for one crypto pair (spot: long or flat, never short).

Buy ``qty`` when the fast simple moving average of closes crosses above the slow one; sell when it
crosses below. Sizing respects the current inventory and the orders still open: a buy never takes
the position (plus pending buys) beyond ``max_position``, a sell never sells more than is held
(minus pending sells). Every bar on which it does nothing yields a Hold saying why.

Params (:class:`Params`): ``fast`` (bars, >= 1, default 10), ``slow`` (bars, > fast, default 20),
``qty`` (base units, > 0, default 0.01).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from engine.domain.intents import Buy, Intent, Sell
from engine.domain.types import Side, StrategyId, Symbol
from strategies.base import DecisionMode, ParamError, Snapshot
from strategies.params import parse_params

#: bumped when a change to the code changes what it decides (recorded with each decision)
version = "1"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fast: int = Field(10, ge=1, description="bars in the fast moving average")
    slow: int = Field(20, ge=2, description="bars in the slow moving average (> fast)")
    qty: Decimal = Field(
        Decimal("0.01"),
        gt=0,
        lt=Decimal("1e18"),
        allow_inf_nan=False,
        description="base units per order",
    )

    @field_validator("slow")
    @classmethod
    def _slower_than_fast(cls, slow: int, info: ValidationInfo) -> int:
        fast = info.data.get("fast")
        if fast is not None and slow <= fast:
            raise ValueError(f"must be greater than fast ({fast})")
        return slow


class SmaCross:
    mode = DecisionMode.BAR

    def __init__(
        self, strategy_id: StrategyId, symbol: Symbol, *, fast: int, slow: int, qty: Decimal
    ) -> None:
        if fast < 1:
            raise ParamError("fast", f"must be >= 1, got {fast}")
        if slow <= fast:
            raise ParamError("slow", f"must be greater than fast ({fast}), got {slow}")
        if qty <= 0:
            raise ParamError("qty", f"must be > 0, got {qty}")
        self._strategy_id = strategy_id
        self._symbol = symbol
        self.fast = fast
        self.slow = slow
        self.qty = qty

    @property
    def strategy_id(self) -> StrategyId:
        return self._strategy_id

    @property
    def symbols(self) -> tuple[Symbol, ...]:
        return (self._symbol,)

    @property
    def bar_history(self) -> int:
        # One bar more than the slow window: the cross compares this bar with the previous one.
        return self.slow + 1

    def decide(self, snapshot: Snapshot) -> Intent:
        symbol = self._symbol
        fast, slow = self.fast, self.slow
        # the host keeps the averages' running sums (Snapshot.sma): no window summed per bar
        fast_now, fast_prev = snapshot.sma_pair(symbol, fast)
        slow_now, slow_prev = snapshot.sma_pair(symbol, slow)
        if fast_now is None or slow_now is None or fast_prev is None or slow_prev is None:
            bars = len(snapshot.bars.get(symbol, ()))
            return snapshot.hold(symbol, _warming_up, bars, slow + 1)
        # Reasons of holds are functions and their arguments (no closure or partial built on
        # every bar), formatted only where holds are recorded: not in an in-memory backtest.
        if fast_prev <= slow_prev and fast_now > slow_now:
            averages = _averages(fast, slow, fast_now, slow_now)
            position = snapshot.position(symbol)
            room = self.qty
            cap = snapshot.limits.max_position
            if cap is not None:
                room = min(room, cap - position - snapshot.pending(symbol, Side.BUY))
            room = _cap_order(room, snapshot, snapshot.bars[symbol][-1].close)
            if room <= 0:
                return snapshot.hold(
                    symbol,
                    f"fast crossed above slow ({averages}) but at max position {position}",
                )
            return Buy(
                key=snapshot.key(symbol, Side.BUY),
                reason=f"fast crossed above slow: {averages}",
                md_ts=snapshot.md_ts,
                quantity=room,
            )
        if fast_prev >= slow_prev and fast_now < slow_now:
            averages = _averages(fast, slow, fast_now, slow_now)
            held = snapshot.position(symbol) - snapshot.pending(symbol, Side.SELL)
            size = _cap_order(min(self.qty, held), snapshot, snapshot.bars[symbol][-1].close)
            if size <= 0:
                return snapshot.hold(
                    symbol, f"fast crossed below slow ({averages}) but nothing held to sell"
                )
            return Sell(
                key=snapshot.key(symbol, Side.SELL),
                reason=f"fast crossed below slow: {averages}",
                md_ts=snapshot.md_ts,
                quantity=size,
            )
        return snapshot.hold(symbol, _no_cross, fast, slow, fast_now, slow_now)


_ZERO = Decimal(0)


def _averages(fast: int, slow: int, fast_now: Decimal, slow_now: Decimal) -> str:
    return f"fast SMA{fast}={fast_now:.8f} slow SMA{slow}={slow_now:.8f}"


def _no_cross(fast: int, slow: int, fast_now: Decimal, slow_now: Decimal) -> str:
    trend = "above" if fast_now > slow_now else "below" if fast_now < slow_now else "at"
    return f"no cross: fast {trend} slow ({_averages(fast, slow, fast_now, slow_now)})"


def _warming_up(bars: int, needed: int) -> str:
    return f"warming up: {bars}/{needed} closed bars"


def _cap_order(qty: Decimal, snapshot: Snapshot, price: Decimal) -> Decimal:
    limits = snapshot.limits
    if limits.max_order_qty is not None:
        qty = min(qty, limits.max_order_qty)
    if limits.max_order_notional is not None and price > 0:
        qty = min(qty, limits.max_order_notional / price)
    return qty


def create(
    strategy_id: StrategyId, symbols: Sequence[Symbol], params: Mapping[str, str]
) -> SmaCross:
    parsed = parse_params(Params, params)
    if len(symbols) != 1:
        raise ParamError("symbols", f"sma_cross trades exactly one symbol, got {list(symbols)}")
    return SmaCross(strategy_id, symbols[0], fast=parsed.fast, slow=parsed.slow, qty=parsed.qty)
