"""The strategy contract: ``decide(snapshot) -> Intent | Sequence[Intent]``, pure and deterministic.

A strategy is handed everything it may look at in one frozen :class:`Snapshot` (market data, its
inventory and open orders from the ledger, its params and limits, ``now``) and answers with
intents. It never awaits, never reads a clock, never keeps state between calls that the snapshot
does not carry: so a replay of the same data decides the same thing, live or in a backtest.

The host assigns the decision keys (see :attr:`Snapshot.interval_key`); strategies may build them
with :meth:`Snapshot.key`, and the host rewrites any key into the canonical one anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from engine.domain.intents import Buy, Cancel, DecisionKey, Hold, Intent, Sell, interval_key_of
from engine.domain.market import Bar, Quote
from engine.domain.types import ClientOrderId, OrderState, Side, StrategyId, Symbol
from strategies.indicators import HistoryBars, OneSymbolBars, RollingCloses, sma_of


class DecisionMode(StrEnum):
    """What wakes a strategy up."""

    BAR = "bar"  #: once per closed bar of its symbols, in order, none skipped
    QUOTE = "quote"  #: whenever the latest quote of one of its symbols changed (conflated)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenOrder:
    """One of the strategy's orders that is not terminal, as the ledger knows it."""

    client_order_id: ClientOrderId
    symbol: Symbol
    side: Side
    quantity: Decimal
    filled_quantity: Decimal
    limit_price: Decimal | None
    state: OrderState

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled_quantity


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyLimits:
    """Per-strategy limits from the config. ``None`` means "no limit of this kind".

    Strategies size within these; the risk checks enforce them again, independently.
    """

    #: largest absolute position per symbol, in base units (contracts for prediction markets)
    max_position: Decimal | None = None
    #: largest quantity of a single order
    max_order_qty: Decimal | None = None
    #: largest quantity * price of a single order, in the quote asset
    max_order_notional: Decimal | None = None
    #: market data older than this (by receipt time) must not be traded on
    max_quote_age: timedelta = timedelta(seconds=5)
    # Enforced by the engine's risk gate only (strategies may ignore them):
    #: largest absolute position value per symbol, in the quote asset
    max_position_notional: Decimal | None = None
    max_orders_per_minute: int | None = None
    #: the decision's market data may be at most this old when the order is checked
    max_input_age: timedelta | None = None
    #: largest distance of a limit price from mid, in basis points
    price_band_bps: Decimal | None = None
    min_spread_bps: Decimal | None = None
    max_spread_bps: Decimal | None = None
    #: an order may be at most this multiple of the strategy's typical order size (the median
    #: of its recent orders; ``typical_order_qty`` until it has a history)
    fat_finger_multiple: Decimal | None = None
    typical_order_qty: Decimal | None = None
    #: an order may take at most this share of the symbol's volume over ``volume_window``
    #: (default one hour), and of the visible size at the touch
    max_volume_fraction: Decimal | None = None
    volume_window: timedelta | None = None
    max_depth_fraction: Decimal | None = None
    #: size checks (risk check names) that shrink an order instead of rejecting it
    resize: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Everything one decision may look at. Built by the host (or the backtest), never mutated."""

    strategy_id: StrategyId
    now: datetime
    #: timestamp of the market data this decision is about (the closed bar, or the newest quote)
    md_ts: datetime
    #: the market-data window this decision belongs to (bar open time, or decision window)
    interval_key: str
    #: latest quote per symbol (absent until the first quote arrives)
    quotes: Mapping[Symbol, Quote] = field(default_factory=lambda: MappingProxyType({}))
    #: the newest closed bars per symbol, oldest first, at most the strategy's ``bar_history``
    #: (the host's is a view that makes each tuple when first read: :class:`HistoryBars`)
    bars: Mapping[Symbol, tuple[Bar, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: the bar whose closing triggered this decision, if one did
    closed_bar: Bar | None = None
    #: the strategy's position per symbol (missing = zero)
    inventory: Mapping[Symbol, Decimal] = field(default_factory=lambda: MappingProxyType({}))
    open_orders: tuple[OpenOrder, ...] = ()
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    limits: StrategyLimits = field(default_factory=StrategyLimits)
    #: whether anything records holds: ``False`` in an in-memory backtest, which only counts
    #: them (:meth:`hold` then builds none and formats no reason)
    explain: bool = True

    @classmethod
    def assemble(
        cls,
        strategy_id: StrategyId,
        now: datetime,
        md_ts: datetime,
        interval_key: str | datetime,
        quotes: Mapping[Symbol, Quote] | QuotesOfBar,
        bars: Mapping[Symbol, tuple[Bar, ...]],
        closed_bar: Bar | None,
        inventory: Mapping[Symbol, Decimal],
        open_orders: tuple[OpenOrder, ...],
        params: Mapping[str, str],
        limits: StrategyLimits,
        explain: bool = True,
    ) -> Snapshot:
        """The same frozen snapshot as ``Snapshot(...)``, in a fraction of the time: the
        generated ``__init__`` parses keywords and calls ``object.__setattr__`` per field, which
        a backtest pays on every bar. For the host, which passes every field.

        ``interval_key`` may be the bar's open time: the key's text (:func:`interval_key_of`)
        is then made when :attr:`interval_key` is first read (a hold nobody records names no
        window: on most bars of a backtest nothing reads it). Likewise ``quotes`` may be a
        :class:`QuotesOfBar`, asked for ``closed_bar``'s quotes when :attr:`quotes` is first
        read.

        Built as a :class:`_Unfrozen` (the same slots, plain attribute writes, which the
        interpreter does quickly) whose class then becomes ``Snapshot``: frozen from then on."""
        snapshot = _new(_Unfrozen)
        snapshot.strategy_id = strategy_id
        snapshot.now = now
        snapshot.md_ts = md_ts
        snapshot.interval_key = interval_key
        snapshot.quotes = quotes
        snapshot.bars = bars
        snapshot.closed_bar = closed_bar
        snapshot.inventory = inventory
        snapshot.open_orders = open_orders
        snapshot.params = params
        snapshot.limits = limits
        snapshot.explain = explain
        snapshot.__class__ = cls  # type: ignore[assignment]
        return snapshot  # type: ignore[return-value]

    def position(self, symbol: Symbol) -> Decimal:
        return self.inventory.get(symbol, _ZERO)

    def pending(self, symbol: Symbol, side: Side) -> Decimal:
        """Remaining quantity of the open orders on ``symbol`` and ``side``."""
        return sum(
            (o.remaining for o in self.open_orders if o.symbol == symbol and o.side is side),
            Decimal(0),
        )

    def closes(self, symbol: Symbol) -> tuple[Decimal, ...]:
        # map over attrgetter: this runs on every bar of a backtest
        return tuple(map(_CLOSE, self.bars.get(symbol, ())))

    def sma(self, symbol: Symbol, window: int, ago: int = 0) -> Decimal | None:
        """The simple moving average of the last ``window`` closes of ``symbol`` as of ``ago``
        bars before the newest (``ago=1``: the previous bar's average), or ``None`` while the
        history is shorter. ``window + ago`` must not exceed the strategy's ``bar_history``.

        The same value as averaging :meth:`closes` by hand, without summing the window on every
        bar: the host keeps a running sum per window (:mod:`strategies.indicators`), read here
        while the host's history is still this snapshot's (during the decision)."""
        bars = self.bars
        held: RollingCloses | None
        if type(bars) is OneSymbolBars:  # HistoryBars.current, inlined: the usual case
            held = bars.rolling
            if held.count != bars.count or symbol != bars.symbol:
                held = None
        elif isinstance(bars, HistoryBars):
            held = bars.current(symbol)
        else:
            held = None
        if held is not None:
            averages = held.averages.get(window)  # RollingCloses.sma, inlined
            if averages is not None and ago >= 0:
                try:
                    return averages[-1 - ago]
                except IndexError:  # warming up
                    return None
            return held.sma(window, ago)
        return sma_of(self.closes(symbol), window, ago)

    def sma_pair(self, symbol: Symbol, window: int) -> tuple[Decimal | None, Decimal | None]:
        """``(sma(symbol, window), sma(symbol, window, 1))``: the average as of the newest bar
        and as of the bar before, what a crossover compares, in one call (a strategy deciding
        on every bar of a backtest). ``window + 1`` must not exceed ``bar_history``."""
        bars = self.bars
        if type(bars) is OneSymbolBars and symbol == bars.symbol:  # the host's, in a decision
            held = bars.rolling
            if held.count == bars.count:
                averages = held.averages.get(window)
                if averages is not None and len(averages) > 1:
                    return averages[-1], averages[-2]
        return self.sma(symbol, window), self.sma(symbol, window, 1)

    def key(self, symbol: Symbol, side: Side | None, sequence: int = 0) -> DecisionKey:
        return DecisionKey.of(self.strategy_id, symbol, self.interval_key, side, sequence)

    def hold(self, symbol: Symbol, reason: str | Callable[..., str], *args: object) -> Hold:
        """This decision's :class:`Hold` on ``symbol``: the same as ``Hold(key=self.key(symbol,
        None), reason=reason, md_ts=self.md_ts)``, built in less than half the time (a strategy
        holds on most bars).

        ``reason`` may be a callable returning the text, called with ``args`` (``hold(symbol,
        explain, fast_now, slow_now)``, or ``lambda: f"..."``) only when the reason is recorded.
        When nothing records holds (``explain`` is false: an in-memory backtest, which only
        counts them) the answer is the symbol's unrecorded hold, built once: its key names no
        bar (interval key :data:`UNRECORDED`) and its reason is :data:`UNEXPLAINED`."""
        if not self.explain:
            held = _UNRECORDED_HOLDS.get((self.strategy_id, symbol))  # unrecorded_hold, inlined
            return held if held is not None else unrecorded_hold(self.strategy_id, symbol)
        if not isinstance(reason, str):
            reason = reason(*args)
        return Hold.of(
            DecisionKey.of(self.strategy_id, symbol, self.interval_key, None, 0), reason, self.md_ts
        )


def unrecorded_hold(strategy_id: StrategyId, symbol: Symbol) -> Hold:
    """The hold :meth:`Snapshot.hold` answers when nothing records holds: one per strategy and
    symbol, so a backtest builds no hold per bar."""
    hold = _UNRECORDED_HOLDS.get((strategy_id, symbol))
    if hold is None:
        if len(_UNRECORDED_HOLDS) >= 4096:  # strategy ids come from configs: a bound anyway
            _UNRECORDED_HOLDS.clear()
        hold = Hold(
            key=DecisionKey(
                strategy_id=strategy_id, symbol=symbol, interval_key=UNRECORDED, side=None
            ),
            reason=UNEXPLAINED,
            md_ts=_EPOCH,
        )
        _UNRECORDED_HOLDS[strategy_id, symbol] = hold
    return hold


Decision = Intent | Sequence[Intent]
#: the reason and the interval key of an unrecorded hold (:meth:`Snapshot.hold`)
UNEXPLAINED = "hold (reason not recorded)"
UNRECORDED = "unrecorded"
_UNRECORDED_HOLDS: dict[tuple[StrategyId, Symbol], Hold] = {}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CLOSE = attrgetter("close")
_INTENT_TYPES = frozenset({Buy, Sell, Hold, Cancel})
_ZERO = Decimal(0)
_new = object.__new__
_SNAPSHOT_FIELDS = (
    "strategy_id",
    "now",
    "md_ts",
    "interval_key",
    "quotes",
    "bars",
    "closed_bar",
    "inventory",
    "open_orders",
    "params",
    "limits",
    "explain",
)
# A field added to Snapshot without a setter here would be left unset by assemble: refuse to
# import rather than build half-initialised snapshots.
if tuple(f.name for f in fields(Snapshot)) != _SNAPSHOT_FIELDS:
    raise RuntimeError("Snapshot's fields changed: update Snapshot.assemble and _SNAPSHOT_FIELDS")


class _Unfrozen:
    """A snapshot under construction: :class:`Snapshot`'s slots in its order, writable."""

    __slots__ = _SNAPSHOT_FIELDS
    strategy_id: StrategyId
    now: datetime
    md_ts: datetime
    interval_key: str | datetime
    quotes: Mapping[Symbol, Quote] | QuotesOfBar
    bars: Mapping[Symbol, tuple[Bar, ...]]
    closed_bar: Bar | None
    inventory: Mapping[Symbol, Decimal]
    open_orders: tuple[OpenOrder, ...]
    params: Mapping[str, str]
    limits: StrategyLimits
    explain: bool


class QuotesOfBar:
    """What :meth:`Snapshot.assemble` may be given for ``quotes`` with a ``closed_bar``: the
    maker of that bar's quotes (:meth:`of`), asked when :attr:`Snapshot.quotes` is first read.
    One maker serves a whole replay; most of its decisions read no quote, and none is made."""

    __slots__ = ()

    def of(self, bar: Bar) -> Mapping[Symbol, Quote]:
        raise NotImplementedError


class _MadeOnRead:
    """A :class:`Snapshot` field's slot that :meth:`Snapshot.assemble` may fill with what makes
    the value rather than the value: made on the first read (:meth:`make`) and kept. Anything
    else reads as stored; writes go to the dataclass's own slot (which stays frozen)."""

    __slots__ = ("_slot",)

    def __init__(self, slot: Any) -> None:
        self._slot = slot

    def make(self, snapshot: object, stored: Any) -> Any:
        """The value for ``stored``, or ``stored`` itself when it is the value already."""
        raise NotImplementedError

    def __get__(self, snapshot: object, owner: type | None = None) -> Any:
        if snapshot is None:
            return self
        stored = self._slot.__get__(snapshot, owner)
        value = self.make(snapshot, stored)
        if value is not stored:
            self._slot.__set__(snapshot, value)
        return value

    def __set__(self, snapshot: object, value: object) -> None:
        self._slot.__set__(snapshot, value)


class _IntervalKeySlot(_MadeOnRead):
    """:attr:`Snapshot.interval_key`: the bar's open time, formatted on the first read."""

    __slots__ = ()

    def make(self, snapshot: object, stored: Any) -> Any:
        return interval_key_of(stored) if type(stored) is datetime else stored


setattr(Snapshot, "interval_key", _IntervalKeySlot(Snapshot.__dict__["interval_key"]))  # noqa: B010


class _QuotesSlot(_MadeOnRead):
    """:attr:`Snapshot.quotes`: a :class:`QuotesOfBar` asked for the closed bar's quotes on the
    first read."""

    __slots__ = ()

    def make(self, snapshot: object, stored: Any) -> Any:
        if not isinstance(stored, QuotesOfBar):
            return stored
        bar = snapshot.closed_bar  # type: ignore[attr-defined]
        if bar is None:
            raise ValueError("quotes of the closed bar, in a snapshot without one")
        return stored.of(bar)


setattr(Snapshot, "quotes", _QuotesSlot(Snapshot.__dict__["quotes"]))  # noqa: B010


@runtime_checkable
class Strategy(Protocol):
    """What the host and the backtest run. Implementations import only ``engine.domain``."""

    @property
    def strategy_id(self) -> StrategyId: ...

    @property
    def symbols(self) -> tuple[Symbol, ...]: ...

    @property
    def mode(self) -> DecisionMode: ...

    @property
    def bar_history(self) -> int:
        """How many closed bars per symbol the snapshot must carry (0 for none)."""
        ...

    def decide(self, snapshot: Snapshot) -> Decision: ...


def as_intents(decision: Decision) -> tuple[Intent, ...]:
    """A strategy may answer with one intent or several; the host handles a tuple."""
    if type(decision) in _INTENT_TYPES:  # the usual answer, without the ABC check
        return (decision,)  # type: ignore[return-value]
    if isinstance(decision, Sequence):
        return tuple(decision)
    return (decision,)


# --- param helpers: every factory validates its params with these, so errors name the field -----


class ParamError(ValueError):
    """A strategy param, or the symbol list (``field == "symbols"``), is wrong."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.detail = message


#: decimal params above 10**(_MAX_DIGITS+1) are refused (no price or size is that large)
_MAX_DIGITS = 17


def param_decimal(
    params: Mapping[str, str],
    name: str,
    *,
    default: Decimal | None = None,
    gt: Decimal | None = None,
    lt: Decimal | None = None,
    ge: Decimal | None = None,
) -> Decimal:
    raw = params.get(name)
    if raw is None:
        if default is None:
            raise ParamError(name, "is required (a decimal number)")
        return default
    try:
        value = Decimal(raw)
    except (InvalidOperation, ValueError):
        raise ParamError(name, f"must be a decimal number, got {raw!r}") from None
    if not value.is_finite():
        raise ParamError(name, f"must be finite, got {raw!r}")
    # 1e999 is finite, but the venue filters' arithmetic (quantity % step) cannot hold it
    if value and value.adjusted() > _MAX_DIGITS:
        raise ParamError(name, f"must be below 1e{_MAX_DIGITS + 1}, got {raw!r}")
    if gt is not None and not value > gt:
        raise ParamError(name, f"must be > {gt}, got {value}")
    if lt is not None and not value < lt:
        raise ParamError(name, f"must be < {lt}, got {value}")
    if ge is not None and not value >= ge:
        raise ParamError(name, f"must be >= {ge}, got {value}")
    return value


def param_int(
    params: Mapping[str, str], name: str, *, default: int | None = None, ge: int | None = None
) -> int:
    raw = params.get(name)
    if raw is None:
        if default is None:
            raise ParamError(name, "is required (a whole number)")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ParamError(name, f"must be a whole number, got {raw!r}") from None
    if ge is not None and value < ge:
        raise ParamError(name, f"must be >= {ge}, got {value}")
    return value


def reject_unknown(
    params: Mapping[str, str], known: set[str], prefixes: tuple[str, ...] = ()
) -> None:
    """A misspelt param must fail loudly, not silently fall back to its default."""
    for name in params:
        if name not in known and not name.startswith(prefixes):
            raise ParamError(name, f"unknown param; expected one of {sorted(known)}")
