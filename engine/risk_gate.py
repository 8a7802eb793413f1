"""The risk gate at the execution boundary: builds the views the pure checks need.

:func:`engine.domain.risk.evaluate` is pure; this module supplies it with the newest market view
(the conflator), the strategy's and the account's exposure (the ledger, through
:class:`~engine.portfolio.Portfolio`), and the limits (per account, overridden per strategy).

Daily loss and drawdown come from :meth:`Portfolio.pnl` (fills folded with
:func:`engine.domain.positions.position_from_fills`, marked at the conflator's mids); the order
rate and the typical order size come from the ledger, so neither restarts from zero after a
restart. A crossed loss limit is remembered in :attr:`RiskGate.halt_reason` for the runtime to
turn into a persistent account HALT and an incident (the gate stays synchronous and pure).

Exposure is a snapshot of the ledger (:meth:`RiskGate.prepare`) plus every reservation
committed since the snapshot's read began plus the intents approved in the current batch, so two
intents cannot together exceed a limit each fits alone, whether or not they share a batch.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from time import monotonic
from typing import Protocol

import structlog

from engine.domain.intents import Buy, DecisionKey, OrderIntent, Sell
from engine.domain.market import Quote
from engine.domain.orders import Order
from engine.domain.risk import (
    CHECK_ORDER,
    FINAL_GATE_CHECKS,
    AccountView,
    Check,
    Exposure,
    Limits,
    MarketView,
    RiskAssessment,
    applicable_checks,
    evaluate,
)
from engine.domain.risk.loss_marks import LossMarks, advance
from engine.domain.risk.utilisation import account_utilisation
from engine.domain.types import Asset, Side, StrategyId, Symbol, utc_now
from engine.ledger.ledger import Ledger
from engine.limits_book import LimitsBook
from engine.marketdata.volume import VolumeTracker
from engine.metrics import error
from engine.portfolio import Portfolio

log = structlog.get_logger("tradectl.risk")

_ZERO = Decimal(0)
_RATE_WINDOW = timedelta(minutes=1)
#: how many of a strategy's latest orders its typical size is the median of, and how many it
#: needs before that median replaces the configured ``typical_order_qty``
TYPICAL_DEPTH = 50
TYPICAL_MIN_ORDERS = 5
#: ledger-derived inputs that move slowly are re-read at most this often
_SLOW_REFRESH_S = 1.0


class MarketSource(Protocol):
    """Anything with the latest quote per symbol (the conflator)."""

    def quote(self, symbol: Symbol) -> Quote | None: ...

    @property
    def volumes(self) -> VolumeTracker: ...


_NO_ACCOUNT = AccountView()


def _add(exposure: Exposure, side: Side, qty: Decimal) -> Exposure:
    # (the constructor, not dataclasses.replace: a third of the cost, on every assessment)
    if side is Side.BUY:
        return Exposure(
            position=exposure.position,
            open_buy_qty=exposure.open_buy_qty + qty,
            open_sell_qty=exposure.open_sell_qty,
        )
    return Exposure(
        position=exposure.position,
        open_buy_qty=exposure.open_buy_qty,
        open_sell_qty=exposure.open_sell_qty + qty,
    )


class RiskGate:
    def __init__(
        self,
        *,
        limits: LimitsBook,
        market: MarketSource,
        portfolio: Portfolio,
        clock: Callable[[], datetime] = utc_now,
        refresh_interval_s: float = 0.25,
        ledger: Ledger | None = None,
    ) -> None:
        self.limits = limits
        #: where the order rate, typical sizes and balance age are read from (None: not used,
        #: then checks that need them reject with "missing")
        self.ledger = ledger
        self.refresh_interval_s = refresh_interval_s
        self.market = market
        self.portfolio = portfolio
        self.clock = clock
        self._by_strategy: dict[tuple[StrategyId, Symbol], Exposure] = {}
        #: per (strategy, symbol): the checks its limits configure, for the assessment and the
        #: final gate (the book is immutable; an unconfigured check would say nothing)
        self._checks: dict[tuple[StrategyId, Symbol, bool], tuple[Check, ...]] = {}
        # Approved in the current batch, not yet committed.
        self._pending: dict[tuple[StrategyId, Symbol], Exposure] = defaultdict(Exposure)
        # Committed reservations the snapshot may not contain yet: (sequence, key, exposure),
        # and their sum per key (what each assessment adds: not the list, which grows by an
        # entry per order between two refreshes).
        self._committed: list[tuple[int, tuple[StrategyId, Symbol], Exposure]] = []
        self._committed_sum: dict[tuple[StrategyId, Symbol], Exposure] = {}
        self._sequence = 0
        self._refreshed_at = float("-inf")
        #: the refresh running in the background (prepare), and how the last one failed
        self._refreshing: asyncio.Task[None] | None = None
        self._refresh_failed: Exception | None = None
        self._seen_generation = -1
        self._submitted: dict[StrategyId, deque[datetime]] = defaultdict(deque)
        # Orders the current batch approved, per strategy: sent together after every check, so
        # none is in _submitted yet; the order rate counts them.
        self._batch_orders: dict[StrategyId, list[datetime]] = defaultdict(list)
        self._typical: dict[tuple[StrategyId, Symbol], tuple[Decimal, int]] = {}
        self._balances_at: datetime | None = None
        self._slow_refreshed_at = float("-inf")
        self._wants_pnl = limits.any(
            lambda lim: lim.max_daily_loss is not None or lim.max_drawdown is not None
        )
        self._wants_balances = limits.any(lambda lim: lim.max_balance_age is not None)
        # The loss limits' marks: read from the ledger at start, advanced at every P&L refresh
        # and saved when they move, so a restart measures from the same day start and peak.
        self._loss_marks: LossMarks | None = None
        self._saved_marks: LossMarks | None = None
        self._pnl: Decimal | None = None
        self._wants_cash = limits.any(lambda lim: lim.max_position_equity_pct is not None)
        self._cash: Decimal | None = None
        for window in {limits.for_strategy(s).volume_window for s in limits.strategies} | {
            limits.account.volume_window
        }:
            market.volumes.keep_at_least(window)
        #: set when a loss limit was crossed; the runtime halts the account and clears it
        self.halt_reason: str | None = None
        #: whether :meth:`watch_losses` saw the loss limits crossed at its last look
        self._loss_crossed = False

    async def load_history(self) -> None:
        """Startup: the last minute's submissions per strategy, so a restart does not reset the
        order rate, and the inputs read from the ledger."""
        if self.ledger is None:
            return
        since = self.clock() - _RATE_WINDOW
        for strategy, times in (await self.ledger.risk_inputs.recent_submissions(since)).items():
            window = self._submitted[strategy]
            window.clear()
            window.extend(sorted(times))
        await self._refresh_slow(force=True)

    async def _refresh_slow(self, *, force: bool = False) -> None:
        if not force and monotonic() - self._slow_refreshed_at < _SLOW_REFRESH_S:
            return
        self._slow_refreshed_at = monotonic()
        if self.ledger is not None:
            if self.limits.any(lambda lim: lim.fat_finger_multiple is not None):
                self._typical = await self.ledger.risk_inputs.typical_order_qty(depth=TYPICAL_DEPTH)
            if self._wants_balances or self._wants_cash:
                latest = await self.ledger.balances.latest()
                self._balances_at = max((b.received_at for b in latest.values()), default=None)
                asset = self.limits.account.equity_asset
                cash = latest.get(Asset(asset)) if asset is not None else None
                self._cash = None if cash is None else cash.free + cash.locked
        if self._wants_pnl:
            await self.portfolio.refresh_pnl(
                self.clock(), day_start=self.limits.account.trading_day.start(self.clock())
            )
            await self._advance_loss_marks()

    async def _advance_loss_marks(self) -> None:
        """Move the day-start and peak marks with the current P&L; persist them when they
        moved. The first call reads them from the ledger (a restart keeps them)."""
        if self.ledger is not None and self._saved_marks is None and self._loss_marks is None:
            self._loss_marks = self._saved_marks = await self.ledger.loss_marks.read()
        now = self.clock()
        pnl = self.portfolio.pnl(self._mark, now)
        self._pnl = None if pnl is None else pnl[1]
        if self._pnl is None:
            return
        self._loss_marks = advance(
            self._loss_marks,
            self._pnl,
            now,
            self.limits.account.trading_day,
            unobserved_start=self.portfolio.day_start_pnl(self._mark),
        )
        if self.ledger is not None and self._loss_marks != self._saved_marks:
            await self.ledger.loss_marks.save(self._loss_marks)
            self._saved_marks = self._loss_marks

    def loss_figures(self) -> tuple[Decimal, Decimal] | None:
        """``(today's P&L, drawdown)`` of the account from the stored marks, at the current
        marks; ``None`` until the P&L is known."""
        pnl = self.portfolio.pnl(self._mark, self.clock())
        if pnl is None or self._loss_marks is None:
            return None
        marks = advance(self._loss_marks, pnl[1], self.clock(), self.limits.account.trading_day)
        return marks.pnl_today(pnl[1]), marks.drawdown(pnl[1])

    def daily_loss(self) -> tuple[Decimal, Decimal] | None:
        """Today's loss of the account and its ``max_daily_loss``, when a limit is set and the
        P&L is known (from the same marks the check uses): what the loss warning watches."""
        limit = self.limits.account.max_daily_loss
        if limit is None:
            return None
        figures = self.loss_figures()
        if figures is None:
            return None
        return -figures[0], limit

    async def watch_losses(self) -> None:
        """Between decisions too (the runtime calls it every half second): advance and store
        the loss marks with the current P&L, so a peak reached while nobody trades is the
        drawdown's peak after a restart; and a crossing of the account's daily loss or drawdown
        limit sets :attr:`halt_reason` as the order checks would, so a position losing while no
        strategy trades still halts the account. A crossing is reported once; the next order's
        own check reports it again (after an operator's unhalt, say)."""
        if not self._wants_pnl:
            return
        await self._refresh_slow()
        crossed = self._loss_breach()
        if crossed is not None and not self._loss_crossed:
            self.halt_reason = crossed
        self._loss_crossed = crossed is not None

    def _loss_breach(self) -> str | None:
        now = self.clock()
        pnl = self.portfolio.pnl(self._mark, now)
        if pnl is None or self._loss_marks is None:
            return None
        limits = self.limits.account
        marks = advance(self._loss_marks, pnl[1], now, limits.trading_day)
        crossed: list[str] = []
        # the order checks' words (engine/domain/risk/checks.py): the halt lifts the same way
        loss = -marks.pnl_today(pnl[1])
        if limits.max_daily_loss is not None and loss > limits.max_daily_loss:
            crossed.append(
                f"{Check.DAILY_LOSS.value}: daily loss {loss} exceeds {limits.max_daily_loss}: "
                "halting"
            )
        drawdown = marks.drawdown(pnl[1])
        if limits.max_drawdown is not None and drawdown > limits.max_drawdown:
            crossed.append(
                f"{Check.DRAWDOWN.value}: drawdown {drawdown} from peak {marks.peak_pnl} "
                f"exceeds {limits.max_drawdown}: halting"
            )
        return "; ".join(crossed) or None

    def take_halt(self) -> str | None:
        """The loss-limit breach to persist, once."""
        reason, self.halt_reason = self.halt_reason, None
        return reason

    async def prepare(self) -> None:
        """Start a batch with a view of the ledger's exposure that misses nothing.

        Re-reading the ledger for every batch would cost a query per order under load, so the
        snapshot is refreshed at most every ``refresh_interval_s``. That is safe because every
        reservation committed since the snapshot's read began is kept on top of it; what can
        be stale is only what shrinks exposure (fills of resting orders move quantity from
        "open" to "position" on the same side; cancels and expiries release it).

        For the same reason a refresh that is due runs in the background, off the path from a
        decision to the wire (inline it was the slowest part of one batch in a few dozen): the
        batches meanwhile use the snapshot they have. After a background refresh failed, the
        next batch reads inline, and its failure (the ledger still away) is raised here; one
        that no longer fails (a dropped connection since replaced) goes unnoticed, rather than
        sending a healthy ledger through an outage. The first snapshot, and every one when
        ``refresh_interval_s`` is 0, is read inline too.
        """
        self._pending.clear()
        self._batch_orders.clear()
        if self._refresh_failed is not None:
            self._refresh_failed = None
            await self._refresh(force=True)
            return
        if self._refreshing is not None and not self._refreshing.done():
            return
        self._refreshing = None
        if not self._refresh_due():
            return
        if self._refreshed_at == float("-inf") or self.refresh_interval_s <= 0:
            await self._refresh()
        else:
            self._refreshing = asyncio.create_task(self._refresh_behind())

    def _refresh_due(self) -> bool:
        now = monotonic()
        return now - self._slow_refreshed_at >= _SLOW_REFRESH_S or (
            self.portfolio.generation != self._seen_generation
            and now - self._refreshed_at >= self.refresh_interval_s
        )

    async def _refresh_behind(self) -> None:
        try:
            await self._refresh()
        except Exception as exc:
            # Told here: the next batch's inline read may succeed, and nothing else would.
            error(self.portfolio.account, "risk_refresh")
            log.warning("risk.refresh_failed", account=self.portfolio.account, error=str(exc))
            self._refresh_failed = exc

    def background(self) -> dict[str, asyncio.Task[None]]:
        """The refresh running in the background, for a stop to cancel: nothing of it may land
        after the account was handed over (it saves the loss marks)."""
        task = self._refreshing
        return {} if task is None or task.done() else {"risk-refresh": task}

    async def _refresh(self, *, force: bool = False) -> None:
        await self._refresh_slow(force=force)
        unchanged = self.portfolio.generation == self._seen_generation
        if not force and (unchanged or monotonic() - self._refreshed_at < self.refresh_interval_s):
            return
        started = self._sequence
        self._seen_generation = self.portfolio.generation
        try:
            await self.portfolio.refresh()
            if self._wants_pnl:
                await self.portfolio.refresh_pnl(
                    self.clock(), day_start=self.limits.account.trading_day.start(self.clock())
                )
                await self._advance_loss_marks()
        except BaseException:
            self._seen_generation = -1  # not in the snapshot: the next batch's read is due
            raise
        self._refreshed_at = monotonic()
        self._by_strategy = self.portfolio.snapshot()
        # Committed before the read began: the snapshot has them.
        self._committed = [c for c in self._committed if c[0] > started]
        self._committed_sum = {}
        for _, key, exposure in self._committed:
            self._committed_sum[key] = _plus(self._committed_sum.get(key, _NO_EXPOSURE), exposure)

    def reserved(self) -> None:
        """The batch's reserve transaction is over: its approvals are now committed (or were
        refused, which only overstates exposure until the next refresh)."""
        for key, exposure in self._pending.items():
            self._sequence += 1
            self._committed.append((self._sequence, key, exposure))
            self._committed_sum[key] = _plus(self._committed_sum.get(key, _NO_EXPOSURE), exposure)
        self._pending.clear()
        self.portfolio.mark_dirty()

    # -- views ---------------------------------------------------------------------------------

    def _mark(self, symbol: Symbol) -> Decimal | None:
        quote = self.market.quote(symbol)
        return None if quote is None else quote.mid

    def _market(self, symbol: Symbol, limits: Limits) -> MarketView:
        quote = self.market.quote(symbol)
        volume = None
        if limits.max_volume_fraction is not None:
            volume = self.market.volumes.volume(symbol, limits.volume_window, self.clock())
        if quote is None:
            return MarketView(
                symbol=symbol, bid=None, ask=None, received_at=None, recent_volume=volume
            )
        return MarketView(
            symbol=symbol,
            bid=quote.bid,
            ask=quote.ask,
            received_at=quote.received_at,
            recent_volume=volume,
            bid_size=quote.bid_size,
            ask_size=quote.ask_size,
        )

    def _layers(self) -> tuple[Iterable[tuple[tuple[StrategyId, Symbol], Exposure]], ...]:
        """The exposure as read, the reservations committed since, the batch's approvals."""
        return (
            self._by_strategy.items(),
            self._committed_sum.items(),
            self._pending.items(),
        )

    def _account(self, strategy: StrategyId, symbol: Symbol) -> AccountView:
        strategy_exposure: dict[Symbol, Exposure] = {}
        account_exposure: dict[Symbol, Exposure] = {}
        for layer in self._layers():
            for (sid, sym), exposure in layer:
                # Exposures are immutable: a symbol's first one is shared, not copied
                if sid == strategy:
                    mine = strategy_exposure.get(sym)
                    strategy_exposure[sym] = exposure if mine is None else _plus(mine, exposure)
                seen = account_exposure.get(sym)
                account_exposure[sym] = exposure if seen is None else _plus(seen, exposure)
        marks: dict[Symbol, Decimal] = {}
        for sym in account_exposure:
            q = self.market.quote(sym)
            if q is not None:
                marks[sym] = q.mid
        limits = self.limits.for_strategy(strategy)
        pnl_today = equity = peak = None
        if limits.max_daily_loss is not None or limits.max_drawdown is not None:
            pnl = self.portfolio.pnl(self._mark, self.clock())
            if pnl is not None and self._loss_marks is not None:
                # the stored marks, advanced to this P&L (a new high or a new day counts now;
                # the next refresh persists it)
                equity = pnl[1]
                loss = advance(
                    self._loss_marks, equity, self.clock(), self.limits.account.trading_day
                )
                pnl_today, peak = loss.pnl_today(equity), loss.peak_pnl
        typical: Decimal | None = None
        if limits.fat_finger_multiple is not None:
            median, count = self._typical.get((strategy, symbol), (Decimal(0), 0))
            typical = (
                median
                if count >= TYPICAL_MIN_ORDERS
                else self.limits.typical_order_qty.get(strategy)
            )
        recent: tuple[datetime, ...] = ()
        if limits.max_orders_per_minute is not None:
            recent = (*self._recent(strategy, self.clock()), *self._batch_orders[strategy])
        return AccountView(
            strategy_exposure=strategy_exposure,
            account_exposure=account_exposure,
            marks=marks,
            recent_order_times=recent,
            pnl_today=pnl_today,
            equity=equity,
            peak_equity=peak,
            balances_received_at=self._balances_at,
            typical_order_qty=typical,
            cash=self._cash,
        )

    # -- execution.RiskGate --------------------------------------------------------------------

    def assess(self, intent: OrderIntent, now: datetime) -> RiskAssessment:
        limits = self.limits.for_strategy(intent.strategy_id)
        result = evaluate(
            intent,
            self._market(intent.symbol, limits),
            self._account(intent.strategy_id, intent.symbol),
            limits,
            now,
            self._checks_for(intent.strategy_id, intent.symbol, final=False),
        )
        if result.approved:
            key = (intent.strategy_id, intent.symbol)
            self._pending[key] = _add(self._pending[key], intent.side, result.quantity)
            if limits.max_orders_per_minute is not None:
                self._batch_orders[intent.strategy_id].append(now)
        if result.halt_reason is not None:
            self.halt_reason = result.halt_reason
        return result

    def recheck(self, order: Order, now: datetime) -> RiskAssessment:
        kind = Buy if order.side is Side.BUY else Sell
        probe = kind(
            key=DecisionKey(
                strategy_id=order.strategy_id,
                symbol=order.symbol,
                interval_key="final-gate",
                side=order.side,
            ),
            reason="final gate",
            # the input's age was judged when the decision was made; here the market's counts
            md_ts=now,
            quantity=order.requested_qty,
            limit_price=order.limit_price,
        )
        limits = self.limits.for_strategy(order.strategy_id)
        # Only what can have changed since the order was assessed (FINAL_GATE_CHECKS): the
        # market. No exposure view to build; the order rate was counted at the assessment,
        # the batch's own approvals included. Its passes are not stored (the ACK is): only a
        # refusal's verdicts need their text.
        return evaluate(
            probe,
            self._market(order.symbol, limits),
            _NO_ACCOUNT,
            limits,
            now,
            self._checks_for(order.strategy_id, order.symbol, final=True),
            explain=False,
        )

    def _checks_for(
        self, strategy: StrategyId, symbol: Symbol, *, final: bool
    ) -> tuple[Check, ...]:
        found = self._checks.get((strategy, symbol, final))
        if found is None:
            found = self._checks[(strategy, symbol, final)] = applicable_checks(
                self.limits.for_strategy(strategy),
                symbol,
                FINAL_GATE_CHECKS if final else CHECK_ORDER,
            )
        return found

    def _recent(self, strategy: StrategyId, now: datetime) -> tuple[datetime, ...]:
        window = self._submitted[strategy]
        while window and now - window[0] > _RATE_WINDOW:
            window.popleft()
        return tuple(window)

    def on_submitted(self, order: Order, now: datetime) -> None:
        if self.limits.for_strategy(order.strategy_id).max_orders_per_minute is not None:
            self._submitted[order.strategy_id].append(now)

    # -- observability -------------------------------------------------------------------------

    def utilization(self) -> dict[tuple[str, Check], float]:
        """Per ``(strategy, limit)``, how much of each configured limit is used (1 = at the
        limit), as the checks would see it now; strategy ``*`` for the account's limits.
        Position limits count resting orders (the worst case) and take the fullest symbol."""
        used: dict[tuple[str, Check], float] = {}

        def put(strategy: str, check: Check, value: Decimal, limit: Decimal | int) -> None:
            ratio = float(value / limit) if limit else 0.0
            used[(strategy, check)] = max(used.get((strategy, check), 0.0), ratio)

        # Each strategy's exposure grouped in one pass, the marks and P&L read once: a view
        # built per strategy walked every strategy's exposure, for hundreds of them each second.
        by_strategy: dict[StrategyId, dict[Symbol, Exposure]] = {}
        for layer in self._layers():
            for (sid, sym), exposure in layer:
                mine = by_strategy.setdefault(sid, {})
                mine[sym] = _plus(mine.get(sym, _NO_EXPOSURE), exposure)
        strategies = tuple(self.limits.strategies)
        # the account's figures as the last strategy's view had them (its marks cover every
        # symbol the account is exposed in)
        view = self._account(strategies[-1] if strategies else StrategyId(""), Symbol(""))
        now = self.clock()
        for strategy in strategies:
            limits = self.limits.for_strategy(strategy)
            for symbol, exposure in by_strategy.get(strategy, {}).items():
                gross, mark = exposure.gross(), view.marks.get(symbol)
                if (qty_limit := limits.position_qty_limit(symbol)) is not None:
                    put(strategy, Check.POSITION_QTY, gross, qty_limit)
                notional_limit = limits.position_notional_limit(symbol)
                if notional_limit is not None and mark is not None:
                    put(strategy, Check.POSITION_NOTIONAL, gross * mark, notional_limit)
            if limits.max_orders_per_minute is not None:
                recent = Decimal(len(self._recent(strategy, now)))
                put(strategy, Check.ORDER_RATE, recent, limits.max_orders_per_minute)
        account = self.limits.account
        if account.max_account_exposure is not None:
            gross_notional = sum(
                (e.gross() * view.marks[s] for s, e in view.account_exposure.items()
                 if s in view.marks),
                _ZERO,
            )  # fmt: skip
            put("*", Check.ACCOUNT_EXPOSURE, gross_notional, account.max_account_exposure)
        # per symbol, per category and vs equity, every strategy together: the fullest one
        for u in account_utilisation(view.account_exposure, view.marks, account, cash=self._cash):
            put("*", u.check, u.used, u.limit)
        if account.max_daily_loss is not None and view.pnl_today is not None:
            put("*", Check.DAILY_LOSS, max(-view.pnl_today, _ZERO), account.max_daily_loss)
        if account.max_drawdown is not None and view.equity is not None:
            drawdown = (view.peak_equity or view.equity) - view.equity
            put("*", Check.DRAWDOWN, max(drawdown, _ZERO), account.max_drawdown)
        return used


_NO_EXPOSURE = Exposure()


def _plus(a: Exposure, b: Exposure) -> Exposure:
    return Exposure(
        position=a.position + b.position,
        open_buy_qty=a.open_buy_qty + b.open_buy_qty,
        open_sell_qty=a.open_sell_qty + b.open_sell_qty,
    )
