"""What ``tradectl new-strategy NAME`` writes: a strategy module, its test and a config snippet.

The templates are a working strategy (a breakout on closed bars), not a skeleton to fill in: the
generated test passes as written, so a user starts from green and changes one thing at a time.
"""

from __future__ import annotations

_MODULE = '''"""{cls}: buys a close above the highest of the previous ``lookback`` closes, sells the
position on a close below the lowest of them (spot: long or flat).

Scaffolded by ``tradectl new-strategy {name}``. Configure it as ``kind = "{name}:{cls}"`` with this
directory on PYTHONPATH. Bump ``version`` when a change alters what it decides: it is recorded with
every decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from engine.domain.intents import Buy, Hold, Intent, Sell
from engine.domain.types import Side, StrategyId, Symbol
from strategies.base import DecisionMode, ParamError, Snapshot


class Params(BaseModel):
    """Validated from the config's ``[strategy.params]``; errors name the field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback: int = Field(20, ge=1, description="closes the breakout is measured against")
    qty: Decimal = Field(
        Decimal("0.01"), gt=0, allow_inf_nan=False, description="base units per buy"
    )


class {cls}:
    """Breakout on closed bars: buy above the recent high, sell below the recent low."""

    Params = Params
    version = "1"
    mode = DecisionMode.BAR

    def __init__(self, strategy_id: StrategyId, symbols: Sequence[Symbol], params: Params) -> None:
        if len(symbols) != 1:
            raise ParamError("symbols", f"{name} trades exactly one symbol, got {{list(symbols)}}")
        self.strategy_id = strategy_id
        self.symbols = tuple(symbols)
        self.params = params
        # the window plus the bar that just closed
        self.bar_history = params.lookback + 1

    def decide(self, snapshot: Snapshot) -> Intent:
        symbol = self.symbols[0]
        closes = snapshot.closes(symbol)
        lookback = self.params.lookback
        if len(closes) <= lookback:
            return self._hold(snapshot, f"warming up: {{len(closes)}}/{{lookback + 1}} closed bars")
        last, window = closes[-1], closes[-lookback - 1 : -1]
        high, low = max(window), min(window)
        position = snapshot.position(symbol)
        if last > high and position <= 0 and snapshot.pending(symbol, Side.BUY) == 0:
            qty = self.params.qty
            if snapshot.limits.max_order_qty is not None:
                qty = min(qty, snapshot.limits.max_order_qty)
            return Buy(
                key=snapshot.key(symbol, Side.BUY),
                reason=f"close {{last}} above the {{lookback}}-bar high {{high}}",
                md_ts=snapshot.md_ts,
                quantity=qty,
            )
        held = position - snapshot.pending(symbol, Side.SELL)
        if last < low and held > 0:
            return Sell(
                key=snapshot.key(symbol, Side.SELL),
                reason=f"close {{last}} below the {{lookback}}-bar low {{low}}",
                md_ts=snapshot.md_ts,
                quantity=held,
            )
        return self._hold(snapshot, f"close {{last}} within [{{low}}, {{high}}]")

    def _hold(self, snapshot: Snapshot, reason: str) -> Hold:
        return snapshot.hold(self.symbols[0], reason)
'''

_TEST = '''"""Tests of {cls} through tradectl's harness (strategies.testing): no engine needed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from strategies.base import ParamError
from strategies.registry import create_strategy
from strategies.testing import StrategyHarness, buys, only_holds, sells
from {name} import {cls}, Params


def harness(**params: object) -> StrategyHarness:
    return StrategyHarness({cls}("test", ("BTCUSDT",), Params.model_validate(params)))


def test_holds_while_warming_up() -> None:
    h = harness(lookback=3)
    assert all(only_holds(decision) for decision in h.closes(10, 10, 10))


def test_buys_a_breakout_then_sells_a_breakdown() -> None:
    h = harness(lookback=3, qty="0.5")
    h.closes(10, 10, 10)
    bought = buys(h.bar(close=11))
    assert [b.quantity for b in bought] == [Decimal("0.5")]
    h.fill(bought[0])
    assert [s.quantity for s in sells(h.bar(close=9))] == [Decimal("0.5")]


def test_a_bad_param_names_the_field() -> None:
    with pytest.raises(ParamError) as info:
        create_strategy("{name}:{cls}", "test", ["BTCUSDT"], {{"lookback": "0"}})
    assert info.value.field == "lookback"
'''

_TOML = """# {cls}: add this to your strategies file (TRADECTL_STRATEGIES_FILE), with the directory
# holding {name}.py on PYTHONPATH. `tradectl strategies` lists its params and their defaults.
[[strategy]]
id = "{id}"
kind = "{name}:{cls}"
symbols = ["BTCUSDT"]
bar_interval = "1m"

[strategy.params]
lookback = 20
qty = "0.01"

[strategy.limits]
max_position = "0.05"
max_order_qty = "0.01"
"""


def render_module(name: str, cls: str) -> str:
    return _MODULE.format(name=name, cls=cls)


def render_test(name: str, cls: str) -> str:
    return _TEST.format(name=name, cls=cls)


def render_toml(name: str, cls: str) -> str:
    return _TOML.format(name=name, cls=cls, id=name.replace("_", "-"))
