"""Test a strategy without an engine: feed it bars or quotes, look at the intents it returns.

::

    from strategies.testing import StrategyHarness, buys

    def test_buys_on_the_cross() -> None:
        harness = StrategyHarness(MyStrategy("s1", ("BTCUSDT",), Params(fast=2, slow=3)))
        harness.closes(10, 10, 10)              # warm-up: holds
        intents = harness.bar(close=20)         # the decision on this closed bar
        assert buys(intents)[0].quantity == Decimal("0.01")

The harness builds each :class:`~strategies.base.Snapshot` the way the engine's strategy host
does (bar history as deep as ``bar_history``, the closed bar's open time as the decision window,
the market data's time as ``now``) and checks the intents as the host does (every intent for one
of the strategy's symbols), so what passes here runs the same in a backtest
and live. Fills are up to the test: :meth:`StrategyHarness.fill` applies one to the inventory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType

from engine.domain.intents import Buy, Cancel, DecisionKey, Hold, Intent, Sell
from engine.domain.market import Bar, Quote
from engine.domain.types import Side, Symbol
from strategies.base import (
    DecisionMode,
    OpenOrder,
    Snapshot,
    Strategy,
    StrategyLimits,
    as_intents,
)

#: the first bar of a harness opens here unless told otherwise
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


def _dec(value: Decimal | int | str | float) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass
class StrategyHarness:
    """Drives one strategy instance through bars or quotes, in memory."""

    strategy: Strategy
    limits: StrategyLimits = field(default_factory=StrategyLimits)
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    start: datetime = DEFAULT_START
    interval: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        depth = max(self.strategy.bar_history, 1)
        self.history: dict[Symbol, deque[Bar]] = {
            s: deque(maxlen=depth) for s in self.strategy.symbols
        }
        self.quotes: dict[Symbol, Quote] = {}
        self.inventory: dict[Symbol, Decimal] = {}
        self.open_orders: list[OpenOrder] = []
        self._next_open: dict[Symbol, datetime] = {}
        self.now = self.start

    # --- feeding ----------------------------------------------------------------------------

    def bar(
        self,
        *,
        close: Decimal | int | str | float,
        symbol: str | None = None,
        open: Decimal | int | str | float | None = None,
        high: Decimal | int | str | float | None = None,
        low: Decimal | int | str | float | None = None,
        volume: Decimal | int | str | float = 1,
    ) -> tuple[Intent, ...]:
        """Close one bar of ``symbol`` (default: the strategy's first) and return the decision
        (nothing for a quote strategy: bars only fill its history)."""
        sym = self._symbol(symbol)
        opened = self._next_open.get(sym, self.start)
        closes_at = opened + self.interval
        c = _dec(close)
        o = c if open is None else _dec(open)
        bar = Bar(
            symbol=sym,
            interval=f"{int(self.interval.total_seconds())}s",
            open_time=opened,
            close_time=closes_at,
            open=o,
            high=max(o, c) if high is None else _dec(high),
            low=min(o, c) if low is None else _dec(low),
            close=c,
            volume=_dec(volume),
            closed=True,
            received_at=closes_at,
        )
        self._next_open[sym] = closes_at
        self.now = max(self.now, closes_at)
        self.history[sym].append(bar)
        if self.strategy.mode is not DecisionMode.BAR:
            return ()
        return self._decide(md_ts=closes_at, interval_key=opened.isoformat(), closed_bar=bar)

    def closes(
        self, *closes: Decimal | int | str | float, symbol: str | None = None
    ) -> list[tuple[Intent, ...]]:
        """One bar per close, in order; the decision of each."""
        return [self.bar(close=c, symbol=symbol) for c in closes]

    def quote(
        self,
        *,
        bid: Decimal | int | str | float,
        ask: Decimal | int | str | float,
        symbol: str | None = None,
        bid_size: Decimal | int | str | float = 1,
        ask_size: Decimal | int | str | float = 1,
        after: timedelta = timedelta(seconds=1),
    ) -> tuple[Intent, ...]:
        """A new quote ``after`` the previous event; the decision (nothing for a bar strategy)."""
        sym = self._symbol(symbol)
        self.now += after
        self.quotes[sym] = Quote(
            symbol=sym,
            bid=_dec(bid),
            bid_size=_dec(bid_size),
            ask=_dec(ask),
            ask_size=_dec(ask_size),
            venue_ts=self.now,
            received_at=self.now,
        )
        if self.strategy.mode is not DecisionMode.QUOTE:
            return ()
        return self._decide(md_ts=self.now, interval_key=self.now.isoformat(), closed_bar=None)

    # --- the account the strategy sees --------------------------------------------------------

    def set_position(self, qty: Decimal | int | str | float, symbol: str | None = None) -> None:
        self.inventory[self._symbol(symbol)] = _dec(qty)

    def position(self, symbol: str | None = None) -> Decimal:
        return self.inventory.get(self._symbol(symbol), Decimal(0))

    def fill(self, intent: Intent, qty: Decimal | int | str | float | None = None) -> None:
        """Apply a (full, or ``qty``) fill of a Buy or Sell to the inventory."""
        if not isinstance(intent, Buy | Sell):
            raise TypeError(f"only a Buy or Sell fills, got {type(intent).__name__}")
        size = intent.quantity if qty is None else _dec(qty)
        signed = size if intent.side is Side.BUY else -size
        self.inventory[intent.symbol] = self.position(intent.symbol) + signed

    # --- internals ----------------------------------------------------------------------------

    def _symbol(self, symbol: str | None) -> Symbol:
        if symbol is None:
            return self.strategy.symbols[0]
        if symbol not in self.strategy.symbols:
            raise ValueError(f"{symbol!r} is not one of {list(self.strategy.symbols)}")
        return Symbol(symbol)

    def _decide(
        self, *, md_ts: datetime, interval_key: str, closed_bar: Bar | None
    ) -> tuple[Intent, ...]:
        snapshot = Snapshot(
            strategy_id=self.strategy.strategy_id,
            now=self.now,
            md_ts=md_ts,
            interval_key=interval_key,
            quotes=MappingProxyType(dict(self.quotes)),
            bars=MappingProxyType({s: tuple(h) for s, h in self.history.items()}),
            closed_bar=closed_bar,
            inventory=MappingProxyType(dict(self.inventory)),
            open_orders=tuple(self.open_orders),
            params=self.params,
            limits=self.limits,
        )
        return _checked(as_intents(self.strategy.decide(snapshot)), self.strategy.symbols)


def _checked(intents: Iterable[Intent], symbols: Iterable[Symbol]) -> tuple[Intent, ...]:
    """Refuse what the engine's host would refuse (it pauses a strategy that returns these)."""
    allowed = frozenset(symbols)
    out = tuple(intents)
    for intent in out:
        if not isinstance(getattr(intent, "key", None), DecisionKey):
            raise AssertionError(f"decide returned {intent!r}, not an intent")
        if intent.symbol not in allowed:
            raise AssertionError(f"intent for {intent.symbol!r}, not one of {sorted(allowed)}")
    return out


def buys(intents: Iterable[Intent]) -> list[Buy]:
    return [i for i in intents if isinstance(i, Buy)]


def sells(intents: Iterable[Intent]) -> list[Sell]:
    return [i for i in intents if isinstance(i, Sell)]


def holds(intents: Iterable[Intent]) -> list[Hold]:
    return [i for i in intents if isinstance(i, Hold)]


def cancels(intents: Iterable[Intent]) -> list[Cancel]:
    return [i for i in intents if isinstance(i, Cancel)]


def only_holds(intents: Iterable[Intent]) -> bool:
    """True when the decision did nothing (every intent a Hold, and at least one)."""
    listed = list(intents)
    return bool(listed) and all(isinstance(i, Hold) for i in listed)
