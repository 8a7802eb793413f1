"""The replay: bars walked as quotes on a simulated clock, the live strategy host deciding at
each close, orders meeting a seeded arrival quote, and the fills folded into the report.

The market model is described in :mod:`engine.backtest`; what becomes of the orders is the
execution path's (:mod:`engine.backtest.execution_path`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from types import MappingProxyType

from engine.backtest.closing import ClosingQuoteMaker, ClosingQuotes, to_tick
from engine.backtest.data import BarSeries
from engine.backtest.equity import EquityCurve
from engine.backtest.errors import BacktestError
from engine.backtest.execution_path import ORDER_ID_PREFIX, ExecutionPath
from engine.backtest.in_memory import PaperPath
from engine.backtest.metrics import performance, round_trips
from engine.backtest.persisted import LedgerPath, LedgerTarget
from engine.backtest.render import plain
from engine.backtest.report import BacktestReport
from engine.backtest.settings import BacktestSettings, FillAt
from engine.domain.ids import client_order_id
from engine.domain.intents import Buy, Cancel, Hold, Intent, Sell
from engine.domain.market import Bar, Quote
from engine.domain.positions import Position, PositionFill, apply_fill, total_pnl, unrealized
from engine.domain.records import builder
from engine.domain.types import (
    ClientOrderId,
    OrderState,
    StrategyId,
    Symbol,
    VenueOrderStatus,
)
from engine.heap import frozen_for_now
from engine.marketdata.conflator import Conflator, Update
from engine.strategy_host import HostedStrategy, StrategyFailed, StrategyHost
from engine.venues.base import OrderReport
from engine.venues.paper import PaperVenue
from strategies.base import DecisionMode, OpenOrder
from strategies.registry import resolve

_ZERO = Decimal(0)
_POSITION_FILL = builder(PositionFill)
_CLOSE_TIME = attrgetter("close_time")
_BPS = Decimal(10_000)
#: how often (in bars) a replay reports its progress
PROGRESS_EVERY = 2048


class Replay:
    """One backtest run. ``run`` may be awaited once.

    With ``ledger`` the strategy's intents take the live durable path (see
    :class:`~engine.backtest.persisted.LedgerTarget`); without, they go straight to the paper
    venue. The market, the latency, the fills and the report are the same either way."""

    def __init__(
        self,
        bars: Sequence[Bar] | BarSeries,
        strategy: str,
        params: Mapping[str, str],
        seed: int,
        *,
        settings: BacktestSettings,
        data_name: str = "<bars>",
        ledger: LedgerTarget | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        series = bars if isinstance(bars, BarSeries) else None
        self.bars: list[Bar] = list(bars.bars if isinstance(bars, BarSeries) else bars)
        if not self.bars:
            raise BacktestError("no bars to replay")
        settings.check()
        self.series = series
        #: called with (bars done, bars) every PROGRESS_EVERY bars and at the end
        self.progress = progress
        self.kind = strategy
        self.params = MappingProxyType(dict(params))
        self.seed = seed
        self.settings = settings
        self.data_name = data_name
        self.symbol = settings.symbol
        self.account = ledger.account if ledger is not None else None
        self.rules = settings.rules_for(series)
        self._rng = random.Random(f"backtest:{seed}")
        self._now = self.bars[0].open_time
        self.venue = PaperVenue(
            rules={self.symbol: self.rules},
            balances={self.rules.quote_asset: settings.capital},
            seed=seed,
            clock=self._clock,
            maker_fee=settings.maker_fee,
            taker_fee=settings.taker_fee,
            fees_in_quote=[self.symbol] if settings.fees_in_quote else [],
        )
        # a module path's name only: "my_pkg.mod:MyStrategy" -> "bt-MyStrategy"
        short = strategy.rpartition(":")[2]
        strategy_id = StrategyId(ledger.account if ledger is not None else f"bt-{short}")
        try:
            kind = resolve(strategy)
            built = kind.create(strategy_id, [self.symbol], params)
        except (KeyError, ValueError, TypeError) as exc:
            raise BacktestError(f"strategy {strategy!r}: {exc}") from None
        self.hosted = HostedStrategy(
            strategy=built,
            params=self.params,
            limits=settings.limits,
            bar_interval=self.bars[0].interval,
            version=kind.version,
        )
        self.conflator = Conflator()
        self._bar_mode = built.mode is DecisionMode.BAR
        self._quote_update = Update(quotes=frozenset({self.symbol}), closed_bars=())
        self.host = StrategyHost(
            conflator=self.conflator,
            portfolio=self,
            sink=self._execute,
            on_strategy_failure=self._strategy_failed,
            is_paused=self._never_paused,
            clock=self._clock,
            # in memory the holds are only counted; --persist records them, stamped
            records_holds=ledger is not None,
        )
        self.host.add(self.hosted)
        self._decide_bar = self.host.bar_decider(self.hosted)
        self._path: ExecutionPath
        if ledger is None:
            self._path = PaperPath(self.venue, self.rules, self._clock)
        else:
            interval = self.bars[0].close_time - self.bars[0].open_time
            self._path = LedgerPath(
                ledger,
                venue=self.venue,
                conflator=self.conflator,
                strategy_id=strategy_id,
                rules=self.rules,
                limits=settings.limits,
                bar_interval=interval,
                clock=self._clock,
            )

        self._position = Position(
            base_asset=self.rules.base_asset, quote_asset=self.rules.quote_asset, symbol=self.symbol
        )
        #: what the strategy holds, as its snapshots show it: replaced when a fill changes it
        self._inventory: Mapping[Symbol, Decimal] = MappingProxyType({self.symbol: _ZERO})
        self._fills_seen = 0
        self._decision_price: dict[ClientOrderId, Decimal] = {}
        self._submitted: set[ClientOrderId] = set()
        self._pending: list[tuple[Buy | Sell, ClientOrderId]] = []
        #: the closing quote decided on: its mid is the orders' decision price (taken only when
        #: an order is decided, not on every bar)
        self._decision_quote: Quote | None = None
        self._holds = 0
        self._fees = _ZERO
        self._curve = EquityCurve(settings.capital)
        # participation off: every quote shows more than any order can ask for
        self._unlimited = self.rules.max_qty

    def _clock(self) -> datetime:
        return self._now

    # -- PortfolioProvider: what the strategy holds, from the venue's fills ----------------
    # The same in both modes, so that a persisted run decides exactly as an in-memory one.
    # (The ledger's ``positions`` view counts fills only; this also takes out fees paid in
    # the base asset, which the venue really kept.)

    async def inventory(self, strategy_id: StrategyId) -> Mapping[Symbol, Decimal]:
        self._fold_fills()
        return {self.symbol: self._position.quantity}

    async def open_orders(self, strategy_id: StrategyId) -> Sequence[OpenOrder]:
        if not self.venue.resting:
            return ()
        return tuple(_open_order(r) for r in await self.venue.open_orders(self.symbol))

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> BacktestReport:
        with frozen_for_now():  # the bars outlive the run: no collection walks them
            return await self._run()

    async def _run(self) -> BacktestReport:
        try:
            await self._path.start()
            at_open = self.settings.fill is FillAt.OPEN
            persisted = self.account is not None
            # in memory a bar strategy decides synchronously: the portfolio is ours, nothing on
            # the hold path awaits (with orders resting, the venue's book is read: awaited)
            sync = not persisted and self._bar_mode
            if sync and not at_open:
                await self._run_at_close()
            else:
                await self._run_bars(at_open=at_open, persisted=persisted, sync=sync)
            self._fold_fills()
            # the last close again, after the last bar's own fills
            self._curve.remark(self._position, self.bars[-1].close)
            if self.progress is not None:
                self.progress(len(self.bars), len(self.bars))
            return await self._report()
        finally:
            try:
                await self._path.close()
            finally:
                await self.venue.close()

    async def _run_bars(self, *, at_open: bool, persisted: bool, sync: bool) -> None:
        """Every bar in order: the resting orders meet its path, the strategy decides at its
        close, the decided orders arrive (at the close, or at the next bar's open)."""
        total = len(self.bars)
        for done, bar in enumerate(self.bars):
            if self.progress is not None and not done % PROGRESS_EVERY:
                self.progress(done, total)
            self._now = bar.open_time
            if persisted:  # in memory the heartbeat does nothing: not awaited per bar
                await self._path.heartbeat()
            if at_open and self._pending:
                # the previous bar's decisions reach the market at this bar's open
                self._arrive(bar, bar.open, bar.open_time)
                await self._submit_pending()
                await self._path.settle()
            if self.venue.resting:  # else no quote along the bar could fill anything
                self._walk_bar(bar, from_open=not at_open or self._now == bar.open_time)
                await self._path.settle()
            self._now = bar.close_time
            if self.venue.fill_count != self._fills_seen:
                self._fold_fills()
            self._mark(bar.close)
            if sync and not self.venue.resting:
                try:
                    intents = self._decide_now(bar)
                except StrategyFailed as failed:
                    await self.host.strategy_failed(self.hosted.strategy_id, failed.error)
                    raise  # the failure handler raised already; never reached
                for intent in intents:  # most bars: none (a hold, counted)
                    await self._execute(intent)
            else:
                await self._decide(bar)
            if self._pending and not at_open:  # most bars decide to hold: nothing to send
                self._arrive(bar, bar.close, bar.close_time)
                await self._submit_pending()

    async def _run_at_close(self) -> None:
        """:meth:`run`'s loop for the usual in-memory run (a bar strategy, orders at the signal
        bar's close): the same steps, with what every bar reads held in locals, and the
        flat-and-unfilled bar's equity carried without a call (most bars of a long/flat
        strategy). Any change here must be made in :meth:`_run_bars` too."""
        venue = self.venue
        # venue.resting and venue.fill_count without a property call per bar
        open_orders, fill_log = venue.book()
        progress = self.progress
        bars = self.bars
        total = len(bars)
        decide, symbol, quote = self._decide_bar, self.symbol, self._quote
        # no participation cap: the closing quote made only if read (see _decide_now), by
        # one maker for the run (no mapping made per bar)
        closing = ClosingQuoteMaker(symbol, quote) if self.settings.participation is None else None
        holds = 0
        # The equity is marked a run of bars at a time: from one fold of fills to the next the
        # position is the same, and the curve marks the run's closes in one go (no call per bar)
        curve, run_from, held, marked = self._curve, 0, self._position, 0
        for done, bar in enumerate(bars):
            if progress is not None and not done % PROGRESS_EVERY:
                progress(done, total)
            if open_orders:  # else no quote along the bar could fill anything
                self._now = bar.open_time
                self._walk_bar(bar, from_open=True)
                await self._path.settle()
            self._now = bar.close_time
            if len(fill_log) != marked:  # (folded here, or by inventory() while deciding)
                self._fold_fills()
                curve.extend(held, bars, run_from, done)
                run_from, held, marked = done, self._position, self._fills_seen
            if not open_orders:  # _decide_now, inlined
                # (with a participation cap the quote's size draws from the run's random stream:
                # drawn now, in order)
                quotes: Mapping[Symbol, Quote] | ClosingQuoteMaker = (
                    closing if closing is not None else {symbol: quote(bar.close, bar)}
                )
                try:
                    intents = decide(bar, quotes, self._inventory, ())
                except StrategyFailed as failed:
                    await self.host.strategy_failed(self.hosted.strategy_id, failed.error)
                    raise  # the failure handler raised already; never reached
                if len(intents) == 1 and type(intents[0]) is Hold:
                    holds += 1  # most bars: a hold, only counted
                else:
                    self._decision_quote = (
                        quotes.quote(bar)
                        if isinstance(quotes, ClosingQuoteMaker)
                        else quotes[symbol]
                    )
                    for intent in intents:
                        await self._execute(intent)
            else:
                await self._decide(bar)
            if self._pending:  # most bars decide to hold: nothing to send
                self._arrive(bar, bar.close, bar.close_time)
                await self._submit_pending()
        curve.extend(held, bars, run_from, total)
        self._holds += holds

    def _walk_bar(self, bar: Bar, *, from_open: bool) -> None:
        """Quotes along the bar's path, so resting orders meet its whole range (after an
        arrival at the open, the open was quoted already and the clock is past it)."""
        extremes = (bar.low, bar.high) if bar.close >= bar.open else (bar.high, bar.low)
        third = (bar.close_time - bar.open_time) / 3
        for n, price in enumerate((bar.open, *extremes)):
            if n == 0 and not from_open:
                continue
            self._now = max(self._now, bar.open_time + n * third)
            self.venue.set_quote(self._quote(price, bar))

    async def _decide(self, bar: Bar) -> None:
        closing = self._quote(bar.close, bar)
        self._decision_quote = closing
        if self.venue.resting:
            self.venue.set_quote(closing)
            await self._path.settle()
        self.conflator.publish(closing)
        if self.account is not None:
            # the bar's volume is what the risk gate's liquidity check reads; the host keeps its
            # own bar history, so in memory (no gate) nothing else would read it
            self.conflator.publish(bar)
        if self._bar_mode:
            await self.host.handle_bar(self.hosted, bar)
        else:
            await self.host.handle(self.hosted, self._quote_update)

    def _decide_now(self, bar: Bar) -> tuple[Intent, ...]:
        """:meth:`_decide` with nothing resting, in memory: the host decides synchronously on
        what it would have read (the closing quote, the position, no open orders). Returns the
        intents to execute; a lone hold is counted here and none returned (the usual bar)."""
        if self.settings.participation is None:
            # nothing random in the quote: built only if the decision reads it (an order's
            # decision price, a strategy looking at quotes), not on every bar
            closing = ClosingQuotes(self.symbol, self._quote, bar)
            quotes: Mapping[Symbol, Quote] = closing
        else:  # the quote's size draws from the run's random stream: drawn now, in order
            quote = self._quote(bar.close, bar)
            quotes = {self.symbol: quote}
        intents = self._decide_bar(bar, quotes, self._inventory, ())
        if len(intents) == 1 and type(intents[0]) is Hold and self.account is None:
            self._holds += 1
            return ()
        self._decision_quote = quotes[self.symbol]
        return intents

    def _arrive(self, bar: Bar, price: Decimal, at: datetime) -> None:
        """The quote the decided orders meet after the latency: ``price`` (the signal bar's
        close, or the next bar's open) moved by a random-walk step over the latency."""
        if not self._pending:
            return
        mean = float(self.settings.latency_ms)
        if mean > 0:
            latency_ms = self._rng.expovariate(1.0 / mean)
            bar_ms = (bar.close_time - bar.open_time) / timedelta(milliseconds=1)
            share = math.sqrt(latency_ms / bar_ms) if bar_ms > 0 else 0.0
            z = self._rng.gauss(0.0, 1.0)
            rel_range = (bar.high - bar.low) / bar.close
            # The float only sizes the step; the price itself stays Decimal on the tick grid.
            step = Decimal(repr(round(z * share, 12))) * rel_range * price
        else:  # no latency: the orders meet the price itself
            latency_ms, step = 0.0, _ZERO
        self._now = at + timedelta(milliseconds=latency_ms) if latency_ms else at
        arrival = self._quote(price + step, bar)
        self.venue.set_quote(arrival)
        if self.account is not None:
            # The engine's market view moves too: the final gate before the wire checks this
            # one (in memory there is no gate, and the host reads the closing quote it is given)
            self.conflator.publish(arrival)

    def _quote(self, mid: Decimal, bar: Bar, at: datetime | None = None) -> Quote:
        """The quote at ``mid`` (stamped ``at``, default now), on the tick grid."""
        if at is None:
            at = self._now
        tick = self.rules.tick_size
        if self.settings.spread_bps == 0:  # a locked quote: both sides trade at the price
            bid = ask = max(to_tick(mid, tick), tick)
        else:
            half = max(mid * self.settings.spread_bps / _BPS / 2, tick)
            bid = to_tick(mid - half, tick)
            ask = to_tick(mid + half, tick)
            if ask <= bid:
                ask = bid + tick
            bid = max(bid, tick)
        participation = self.settings.participation
        if participation is None:
            size = self._unlimited
        else:
            size_factor = Decimal(repr(round(self._rng.uniform(0.25, 1.0), 6)))
            size = self.rules.round_quantity(bar.volume * participation * size_factor)
        # our own checked values: the quick constructor (a quote on every bar)
        return Quote.from_decoded(self.symbol, bid, size, ask, size, at, at, None)

    # -- execution -------------------------------------------------------------------------

    async def _execute(self, intent: Intent) -> None:
        """The host's sink. Orders wait for the latency; holds and cancels act at once."""
        if type(intent) is Hold and self.account is None:
            self._holds += 1
            return  # in memory a hold is only counted (the usual bar: checked first)
        if isinstance(intent, Hold | Cancel):
            if isinstance(intent, Hold):
                self._holds += 1
                if self.account is None:
                    return  # in memory a hold is only counted
            await self._path.decided(intent)
            return
        coid = client_order_id(ORDER_ID_PREFIX, intent.key)
        if coid in self._submitted:
            return  # the same decision key again: reserved once, as the ledger would
        self._submitted.add(coid)
        assert self._decision_quote is not None  # the host decides after the closing quote
        self._decision_price[coid] = self._decision_quote.mid
        self._pending.append((intent, coid))

    async def _submit_pending(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await self._path.submit(pending)

    async def _strategy_failed(self, strategy_id: StrategyId, exc: BaseException) -> None:
        raise BacktestError(
            f"strategy {self.kind!r} raised at {self._now.isoformat()}: {type(exc).__name__}: {exc}"
        ) from exc

    async def _never_paused(self, strategy_id: StrategyId) -> bool:
        return False

    # -- accounting ------------------------------------------------------------------------

    def _fold_fills(self) -> None:
        if self.venue.fill_count == self._fills_seen:
            return  # the usual bar: nothing filled since
        fills = self.venue.fills_from(self._fills_seen)
        for fill in fills:
            self._position = apply_fill(
                self._position,
                # PositionFill(side=, qty=, price=, fee=, fee_asset=), without keyword parsing
                _POSITION_FILL(fill.side, fill.quantity, fill.price, fill.fee, fill.fee_asset),
            )
            self._fees += (
                fill.fee if fill.fee_asset == self.rules.quote_asset else fill.fee * fill.price
            )
        self._fills_seen += len(fills)
        self._inventory = MappingProxyType({self.symbol: self._position.quantity})

    def _mark(self, price: Decimal) -> None:
        self._curve.mark(self._position, price, self._fills_seen)

    async def _report(self) -> BacktestReport:
        quantities, filled_quantities = self.venue.placed_quantities(self.symbol)
        fills = self.venue.all_fills()
        requested = sum(quantities, _ZERO)
        filled = sum(filled_quantities, _ZERO)
        slip_weighted = _ZERO
        for fill in fills:
            assert fill.client_order_id is not None
            ref = self._decision_price[fill.client_order_id]
            slip_weighted += fill.side.sign * (fill.price - ref) / ref * _BPS * fill.quantity
        fill_qty = sum((f.quantity for f in fills), _ZERO)
        last = self.bars[-1].close
        pnl = total_pnl(self._position, last)
        rejected, rejections = await self._path.rejections()
        trips, open_trip = round_trips(fills, self.rules.quote_asset, last, self.rules.step_size)
        times = tuple(map(_CLOSE_TIME, self.bars))
        curve = self._curve
        perf = performance(
            times=times,
            equity=curve.values,
            exposed_bars=curve.exposed,
            first_close=self.bars[0].close,
            last_close=last,
            trips=trips,
        )
        return BacktestReport(
            strategy=self.kind,
            params=self.params,
            symbol=self.symbol,
            seed=self.seed,
            data=self.data_name,
            bars=len(self.bars),
            start=self.bars[0].open_time,
            end=self.bars[-1].close_time,
            decisions=self.host.decisions[self.hosted.strategy_id],
            holds=self._holds,
            orders=len(quantities),
            rejected=rejected,
            partially_filled=sum(
                1 for q, done in zip(quantities, filled_quantities, strict=True) if _ZERO < done < q
            ),
            fills=fills,
            trades=tuple(trips),
            open_trade=open_trip,
            performance=perf,
            equity_times=times,
            equity=tuple(curve.values),
            model=self._model(),
            interval=self.bars[0].interval,
            gaps=self.series.gaps if self.series is not None else 0,
            largest_gap=self.series.largest_gap if self.series is not None else timedelta(0),
            unsent=len(self._pending),
            requested_qty=requested,
            filled_qty=filled,
            fill_rate=(filled / requested) if requested else None,
            fees=self._fees,
            realized_pnl=self._position.realized_pnl,
            unrealized_pnl=unrealized(self._position, last),
            pnl=pnl,
            final_position=self._position.quantity,
            last_price=last,
            avg_slippage_bps=(slip_weighted / fill_qty) if fill_qty else None,
            start_equity=self.settings.capital,
            end_equity=self.settings.capital + pnl,
            max_drawdown=curve.max_drawdown,
            max_drawdown_pct=curve.max_drawdown_pct,
            rejections=tuple(rejections),
            account=self.account,
        )

    def _model(self) -> dict[str, str]:
        s = self.settings
        return {
            "fill": s.fill.value,
            "capital": plain(s.capital),
            "fees": plain(s.taker_fee)
            if s.maker_fee == s.taker_fee
            else f"maker {plain(s.maker_fee)} taker {plain(s.taker_fee)}",
            "fee_asset": s.fee_asset.value,
            "spread_bps": plain(s.spread_bps),
            "latency_ms": plain(s.latency_ms),
            "participation": "off" if s.participation is None else plain(s.participation),
            "tick_size": plain(self.rules.tick_size),
            "lot_step": plain(self.rules.step_size),
        }


def _open_order(report: OrderReport) -> OpenOrder:
    state = (
        OrderState.PARTIALLY_FILLED
        if report.status is VenueOrderStatus.PARTIALLY_FILLED
        else OrderState.OPEN
    )
    return OpenOrder(
        client_order_id=report.client_order_id,
        symbol=report.symbol,
        side=report.side,
        quantity=report.quantity,
        filled_quantity=report.filled_quantity,
        limit_price=report.limit_price,
        state=state,
    )
