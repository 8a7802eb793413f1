"""Runs strategies: one task each, woken by the conflator, deciding on frozen snapshots.

For every decision the host reads the strategy's inventory and open orders from the injected
:class:`PortfolioProvider` (the ledger, live), builds a :class:`~strategies.base.Snapshot`, calls
``decide`` and hands every intent (holds included) to the injected ``sink`` in order.

Decision keys come from market data, never from the clock: a bar strategy's interval key is the
closed bar's open time, a quote strategy's is the start of the decision window containing the
newest quote's venue time (``floor(md_ts / window)``). A new host fed the same data after a restart
therefore produces the same keys, hence the same client order ids. Several decisions inside one
window share their keys on purpose: the ledger reserves the first and recognises the others.

Isolation: a strategy whose ``decide`` raises (or returns something that is not a valid intent for
its own symbols) is paused through ``on_strategy_failure`` and the others go on. A paused strategy
(``is_paused``) is not called; its bar history keeps filling so it resumes with a full window.
Failures of the sink, the portfolio or the failure handler are the engine's, not the strategy's:
they propagate (out of :meth:`StrategyHost.run`, for the supervisor).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Protocol

import structlog

from engine.domain.intents import (
    Buy,
    DecisionKey,
    Hold,
    Intent,
    Sell,
    interval_key_of,
    with_decision_price,
)
from engine.domain.market import Bar, Quote
from engine.domain.stage import Staging
from engine.domain.types import StrategyId, Symbol, utc_now
from engine.marketdata.bars import floor_time
from engine.marketdata.conflator import Conflator, Update
from engine.strategy_answers import assign_keys, full_size_view, seen_price
from strategies.base import (
    UNRECORDED,
    DecisionMode,
    OpenOrder,
    QuotesOfBar,
    Snapshot,
    Strategy,
    StrategyLimits,
    as_intents,
    unrecorded_hold,
)
from strategies.indicators import OneSymbolBars, RollingCloses, history_bars

log = structlog.get_logger(__name__)
_NOTHING = object()

IntentSink = Callable[[Intent], Awaitable[None]]
FailureHandler = Callable[[StrategyId, BaseException], Awaitable[None]]
PauseCheck = Callable[[StrategyId], Awaitable[bool]]
#: :meth:`StrategyHost.bar_decider`'s answer: ``(bar, quotes, inventory, open_orders) -> intents``
BarDecider = Callable[
    [Bar, Mapping[Symbol, Quote] | QuotesOfBar, Mapping[Symbol, Decimal], Sequence[OpenOrder]],
    tuple[Intent, ...],
]

DEFAULT_DECISION_WINDOW = timedelta(seconds=1)
# an enum member looked up on its class costs a few attribute lookups: once per decision adds up
_BAR = DecisionMode.BAR
_QUOTE = DecisionMode.QUOTE


class PortfolioProvider(Protocol):
    """What the host needs from the ledger about one strategy."""

    async def inventory(self, strategy_id: StrategyId) -> Mapping[Symbol, Decimal]: ...

    async def open_orders(self, strategy_id: StrategyId) -> Sequence[OpenOrder]: ...


class InMemoryPortfolio:
    """A :class:`PortfolioProvider` kept in memory: for tests, benchmarks and replays."""

    def __init__(self) -> None:
        self.positions: dict[StrategyId, dict[Symbol, Decimal]] = {}
        self.orders: dict[StrategyId, list[OpenOrder]] = {}

    def set_position(self, strategy_id: StrategyId, symbol: Symbol, qty: Decimal) -> None:
        self.positions.setdefault(strategy_id, {})[symbol] = qty

    async def inventory(self, strategy_id: StrategyId) -> Mapping[Symbol, Decimal]:
        return dict(self.positions.get(strategy_id, {}))

    async def open_orders(self, strategy_id: StrategyId) -> Sequence[OpenOrder]:
        return tuple(self.orders.get(strategy_id, ()))


@dataclass(frozen=True, slots=True, kw_only=True)
class HostedStrategy:
    """A strategy with what the config says about it."""

    strategy: Strategy
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    limits: StrategyLimits = field(default_factory=StrategyLimits)
    #: quote strategies: decisions within one window share their decision keys
    decision_window: timedelta = DEFAULT_DECISION_WINDOW
    #: bar strategies: only closed bars of this interval (e.g. ``"1m"``); ``None`` takes all
    bar_interval: str | None = None
    #: recorded with each decision: the strategy's code version and a hash of its config
    version: str | None = None
    config_hash: str | None = None
    #: the stage and capital fraction every order's size is scaled by (engine/domain/stage.py);
    #: ``None``: full size, nothing recorded
    staging: Staging | None = None

    def __post_init__(self) -> None:
        if self.decision_window <= timedelta(0):
            raise ValueError(f"decision_window must be positive, got {self.decision_window}")

    @property
    def strategy_id(self) -> StrategyId:
        return self.strategy.strategy_id


def md_time(quote: Quote) -> datetime:
    """The venue's time of a quote, or our receipt time when the venue gave none."""
    return quote.venue_ts if quote.venue_ts is not None else quote.received_at


def bar_interval_key(bar: Bar) -> str:
    return interval_key_of(bar.open_time)


def window_interval_key(md_ts: datetime, window: timedelta) -> str:
    return floor_time(md_ts, window).isoformat()


def always() -> bool:
    """The default ``may_trade``: trading is never stopped."""
    return True


class StrategyHost:
    def __init__(
        self,
        *,
        conflator: Conflator,
        portfolio: PortfolioProvider,
        sink: IntentSink,
        on_strategy_failure: FailureHandler,
        is_paused: PauseCheck,
        clock: Callable[[], datetime] = utc_now,
        may_trade: Callable[[], bool] = always,
        records_holds: bool = True,
    ) -> None:
        self._conflator = conflator
        self._portfolio = portfolio
        self._sink = sink
        self._on_failure = on_strategy_failure
        self._is_paused = is_paused
        self._clock = clock
        #: False while the ledger is away or not reconciled since (engine.outage): no strategy
        #: decides, but bar histories keep filling so each resumes with a full window
        self._may_trade = may_trade
        #: False when the sink only counts holds (an in-memory backtest): they reach it
        #: unstamped, which saves a copy of every hold on every bar
        self._stamp_holds = records_holds
        self._hosted: dict[StrategyId, HostedStrategy] = {}
        #: per strategy and symbol, the closed bars (as deep as its bar_history) and the running
        #: sums behind Snapshot.sma
        self._history: dict[StrategyId, dict[Symbol, RollingCloses]] = {}
        self._symbols: dict[StrategyId, tuple[Symbol, ...]] = {}
        # Failed here but the persistent pause not seen yet: never call it in between.
        self._failed: set[StrategyId] = set()
        self._deciders: dict[StrategyId, BarDecider] = {}
        self.decisions: dict[StrategyId, int] = {}
        self.failures: dict[StrategyId, int] = {}

    def add(self, hosted: HostedStrategy) -> None:
        sid = hosted.strategy_id
        if sid in self._hosted:
            raise ValueError(f"strategy {sid!r} is already hosted")
        if not hosted.strategy.symbols:
            raise ValueError(f"strategy {sid!r} trades no symbol")
        self._hosted[sid] = hosted
        depth = max(hosted.strategy.bar_history, 1)
        self._history[sid] = {s: RollingCloses(depth) for s in hosted.strategy.symbols}
        # read once: a strategy's symbols are fixed when it is added (its history is keyed by
        # them), and a property building the tuple was called twice per decision
        self._symbols[sid] = tuple(hosted.strategy.symbols)
        self.decisions[sid] = 0
        self.failures[sid] = 0

    def seed_bars(self, strategy_id: StrategyId, bars: Iterable[Bar]) -> None:
        """Warm a strategy's bar history (e.g. from the venue's klines) before it runs."""
        history = self._history[strategy_id]
        for bar in bars:
            if bar.closed and bar.symbol in history:
                history[bar.symbol].append(bar)

    @property
    def strategy_ids(self) -> tuple[StrategyId, ...]:
        return tuple(self._hosted)

    async def run(self) -> None:
        """One named task per strategy, until cancelled (or the sink/portfolio fails)."""
        async with asyncio.TaskGroup() as group:
            for sid in self._hosted:
                group.create_task(self.run_strategy(sid), name=f"strategy:{sid}")

    async def run_strategy(self, strategy_id: StrategyId) -> None:
        hosted = self._hosted[strategy_id]
        consumer = f"strategy:{strategy_id}"
        sub = self._conflator.subscribe(
            consumer,
            hosted.strategy.symbols,
            bar_interval=hosted.bar_interval,
            # handle() decides on quotes only in QUOTE mode: a bar strategy woken by each quote
            # would do nothing with it
            quotes=hosted.strategy.mode is DecisionMode.QUOTE,
        )
        try:
            while True:
                await self.handle(hosted, await sub.next())
        finally:
            self._conflator.unsubscribe(consumer)

    async def handle(self, hosted: HostedStrategy, update: Update) -> None:
        """Decide on one update: every closed bar in order, then the latest quotes."""
        for bar in update.closed_bars:
            await self.handle_bar(hosted, bar)
        sid = hosted.strategy_id
        if hosted.strategy.mode is _QUOTE and update.quotes and await self._may_run(sid):
            quotes = self._conflator.quotes(self._symbols[sid])
            if quotes:
                md_ts = max(md_time(q) for q in quotes.values())
                await self._decide(
                    hosted,
                    md_ts,
                    window_interval_key(md_ts, hosted.decision_window),
                    None,
                    quotes,
                )

    async def handle_bar(self, hosted: HostedStrategy, bar: Bar) -> None:
        """One closed bar: into the history, and a bar strategy decides on it. (A replay calls
        this directly: no :class:`Update` per bar.)"""
        strategy = hosted.strategy
        sid = strategy.strategy_id
        self._history[sid][bar.symbol].append(bar)
        if strategy.mode is _BAR and await self._may_run(sid):
            await self._decide(hosted, bar.close_time, bar.open_time, bar)

    def decide_bar_now(
        self,
        hosted: HostedStrategy,
        bar: Bar,
        quotes: Mapping[Symbol, Quote],
        inventory: Mapping[Symbol, Decimal],
        open_orders: Sequence[OpenOrder],
    ) -> tuple[Intent, ...]:
        """:meth:`handle_bar` for a caller that holds the portfolio in memory and sinks the
        intents itself (an in-memory replay): no coroutine per bar where nothing awaits.

        The caller answers for what the awaited path asks: ``quotes``, ``inventory`` and
        ``open_orders`` are what the conflator and the portfolio would give (mappings nobody
        changes afterwards, which the snapshot keeps: a dict is only wrapped read-only), and
        the strategy is not paused (``is_paused`` is not consulted). Returns the intents to
        sink, in order (none while trading is stopped or after a failure); raises
        :class:`StrategyFailed` when the strategy does (then await :meth:`strategy_failed`)."""
        return self.bar_decider(hosted)(bar, quotes, inventory, open_orders)

    def bar_decider(self, hosted: HostedStrategy) -> BarDecider:
        """:meth:`decide_bar_now` of one strategy as a function, with everything it reads on
        every bar looked up once (for a replay, which calls it on every bar). The same
        snapshot, checks and answer as the awaited path's :meth:`_intents`: a change to one is
        a change to both."""
        sid = hosted.strategy_id
        decider = self._deciders.get(sid)
        if decider is not None:
            return decider
        strategy = hosted.strategy
        history = self._history[sid]
        # one symbol (most strategies): its history without a lookup, its bars view directly
        only_symbol = Symbol("")  # no symbol is empty
        only_history: RollingCloses | None = None
        if len(history) == 1:
            ((only_symbol, only_history),) = history.items()
        symbols = self._symbols[sid]
        bar_mode = strategy.mode is _BAR
        # None: trading is never stopped (no call per bar to learn it)
        may_trade = self._may_trade if self._may_trade is not always else None
        failed = self._failed
        decisions = self.decisions
        clock = self._clock
        explain = self._stamp_holds
        staging = hosted.staging
        params, limits = hosted.params, hosted.limits
        assemble = Snapshot.assemble
        finish = self._finish
        one_symbol_bars = OneSymbolBars
        # An in-memory backtest's usual answer, its one symbol's unrecorded hold (the same object
        # every bar): recognised by identity, for what the checks below would let through as is
        usual: object = _NOTHING  # (never what a strategy answers)
        usual_intents: tuple[Intent, ...] = ()
        if only_history is not None and not explain and staging is None:
            hold = unrecorded_hold(sid, only_symbol)
            usual, usual_intents = hold, (hold,)

        def decide(
            bar: Bar,
            quotes: Mapping[Symbol, Quote] | QuotesOfBar,
            inventory: Mapping[Symbol, Decimal],
            open_orders: Sequence[OpenOrder],
        ) -> tuple[Intent, ...]:
            symbol = bar.symbol
            if only_history is not None and symbol == only_symbol:
                only_history.append(bar)
            else:
                history[symbol].append(bar)
            if not bar_mode or (may_trade is not None and not may_trade()) or sid in failed:
                return ()
            if staging is not None:
                inventory, open_orders = full_size_view(staging, inventory, open_orders)
            try:
                snapshot = assemble(
                    sid,
                    clock(),
                    bar.close_time,
                    bar.open_time,  # the interval key's time: formatted only if read
                    MappingProxyType(quotes) if type(quotes) is dict else quotes,
                    one_symbol_bars(only_symbol, only_history)
                    if only_history is not None
                    else history_bars(history),
                    bar,
                    MappingProxyType(inventory) if type(inventory) is dict else inventory,
                    tuple(open_orders),
                    params,
                    limits,
                    explain,
                )
                decision = strategy.decide(snapshot)
                if decision is usual:
                    decisions[sid] += 1
                    return usual_intents
                key = decision.key if type(decision) is Hold and not explain else None
                if (
                    type(key) is DecisionKey
                    and key.interval_key is UNRECORDED
                    and key.sequence == 0
                    and key.strategy_id == sid
                    and key.symbol in symbols
                ):
                    # the usual bar of a backtest (a key only when the decision is a Hold)
                    intents: tuple[Intent, ...] = (decision,)  # type: ignore[assignment]
                else:
                    intents = assign_keys(
                        as_intents(decision),
                        strategy_id=sid,
                        interval_key=snapshot.interval_key,
                        symbols=symbols,
                        version=hosted.version,
                        config_hash=hosted.config_hash,
                        stamp_holds=explain,
                    )
            except Exception as exc:
                raise StrategyFailed(exc) from exc
            decisions[sid] += 1
            if staging is None and len(intents) == 1 and type(intents[0]) is Hold:
                return intents  # the usual bar: nothing to size or price
            # the snapshot's quotes: what a QuotesOfBar made for the bar (if it was read)
            return tuple(finish(hosted, intents, snapshot.quotes, bar))

        self._deciders[sid] = decide
        return decide

    async def strategy_failed(self, strategy_id: StrategyId, exc: BaseException) -> None:
        """What the host does when a strategy fails: pause it, log, tell the failure handler
        (for :meth:`decide_bar_now`'s :class:`StrategyFailed`)."""
        await self._fail(strategy_id, exc)

    async def _may_run(self, sid: StrategyId) -> bool:
        if not self._may_trade():
            return False
        paused = await self._is_paused(sid)
        if sid in self._failed:
            if paused:
                self._failed.discard(sid)  # the persistent pause governs from here on
            return False
        return not paused

    async def _decide(  # positional: called once per bar in a backtest
        self,
        hosted: HostedStrategy,
        md_ts: datetime,
        interval_key: str | datetime,
        closed_bar: Bar | None,
        quotes: Mapping[Symbol, Quote] | None = None,
    ) -> None:
        sid = hosted.strategy.strategy_id
        if quotes is None:
            quotes = self._conflator.quotes(self._symbols[sid])
        inventory = await self._portfolio.inventory(sid)
        open_orders = await self._portfolio.open_orders(sid)
        if hosted.staging is not None:
            inventory, open_orders = full_size_view(hosted.staging, inventory, open_orders)
        try:
            intents = self._intents(
                hosted,
                sid,
                md_ts,
                interval_key,
                closed_bar,
                quotes,
                MappingProxyType(dict(inventory)),  # the portfolio's, which may change
                open_orders,
            )
        except Exception as exc:
            await self._fail(sid, exc)
            return
        self.decisions[sid] += 1
        for intent in self._finish(hosted, intents, quotes, closed_bar):
            await self._sink(intent)

    def _intents(  # positional: called once per bar in a backtest
        self,
        hosted: HostedStrategy,
        sid: StrategyId,
        md_ts: datetime,
        interval_key: str | datetime,
        closed_bar: Bar | None,
        quotes: Mapping[Symbol, Quote],
        inventory: Mapping[Symbol, Decimal],
        open_orders: Sequence[OpenOrder],
    ) -> tuple[Intent, ...]:
        """The strategy's decision on a snapshot, keyed. Raises what the strategy raised (or
        ``ValueError`` on an intent it may not return): the strategy's failure.

        ``interval_key`` may be the bar's open time, formatted only if read (an unrecorded hold
        names no window)."""
        snapshot = Snapshot.assemble(
            sid,
            self._clock(),
            md_ts,
            interval_key,
            # a fresh dict from the conflator, never kept by it: no copy (a mapping that is not
            # a dict, such as a replay's closing quote, is read-only already)
            MappingProxyType(quotes) if isinstance(quotes, dict) else quotes,
            # a view of the history as of now: no copy of the window unless the strategy reads it
            history_bars(self._history[sid]),
            closed_bar,
            inventory,
            tuple(open_orders),
            hosted.params,
            hosted.limits,
            self._stamp_holds,
        )
        decision = hosted.strategy.decide(snapshot)
        if type(decision) is Hold and not self._stamp_holds:
            # the usual bar of a backtest: the unrecorded hold, checked as assign_keys would
            key = decision.key
            if (
                type(key) is DecisionKey
                and key.sequence == 0
                and key.strategy_id == sid
                and key.symbol in self._symbols[sid]
                and (key.interval_key is UNRECORDED or key.interval_key == snapshot.interval_key)
            ):
                return (decision,)
        return assign_keys(
            as_intents(decision),
            strategy_id=sid,
            interval_key=snapshot.interval_key,
            symbols=self._symbols[sid],
            version=hosted.version,
            config_hash=hosted.config_hash,
            stamp_holds=self._stamp_holds,
        )

    def _finish(
        self,
        hosted: HostedStrategy,
        intents: tuple[Intent, ...],
        quotes: Mapping[Symbol, Quote],
        closed_bar: Bar | None,
    ) -> Iterator[Intent]:
        """The intents as the sink gets them: staged, orders with their decision price."""
        staging = hosted.staging
        for intent in intents:
            if staging is not None:
                intent = staging.apply(intent)
            if type(intent) is not Hold and isinstance(intent, Buy | Sell):
                # only orders carry a decision price
                intent = with_decision_price(intent, seen_price(intent.symbol, quotes, closed_bar))
            yield intent

    async def _fail(self, sid: StrategyId, exc: BaseException) -> None:
        self._failed.add(sid)
        self.failures[sid] += 1
        log.error(
            "strategy.failed",
            strategy_id=sid,
            error=f"{type(exc).__name__}: {exc}",
            action="paused; resume after fixing it",
        )
        await self._on_failure(sid, exc)


class StrategyFailed(Exception):
    """A strategy raised (or returned what it may not) in :meth:`StrategyHost.decide_bar_now`;
    ``error`` is what it raised."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
