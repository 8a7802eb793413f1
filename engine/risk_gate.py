"""The risk gate at the execution boundary: builds the views the pure checks need.

:func:`engine.domain.risk.evaluate` is pure; this module supplies it with the newest market view
(the conflator), the strategy's and the account's exposure (the ledger, through
:class:`~engine.portfolio.Portfolio`), and the limits (per account, overridden per strategy).

Exposure is a snapshot of the ledger (:meth:`RiskGate.prepare`) plus every reservation
committed since the snapshot's read began plus the intents approved in the current batch, so two
intents cannot together exceed a limit each fits alone, whether or not they share a batch.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from time import monotonic
from typing import Protocol

from engine.domain.intents import Buy, DecisionKey, OrderIntent, Sell
from engine.domain.market import Quote
from engine.domain.orders import Order
from engine.domain.risk import AccountView, Exposure, Limits, MarketView, RiskAssessment, evaluate
from engine.domain.types import Side, StrategyId, Symbol, utc_now
from engine.portfolio import Portfolio
from engine.strategy_config import StrategySpec

_ZERO = Decimal(0)
_RATE_WINDOW = timedelta(minutes=1)


class MarketSource(Protocol):
    """Anything with the latest quote per symbol (the conflator)."""

    def quote(self, symbol: Symbol) -> Quote | None: ...


_DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsBook:
    """Account-wide limits, and per-strategy limits that override them field by field."""

    account: Limits = field(default_factory=Limits)
    strategies: Mapping[StrategyId, Limits] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> LimitsBook:
        return cls()

    @classmethod
    def from_specs(
        cls, specs: tuple[StrategySpec, ...], account: Limits | None = None
    ) -> LimitsBook:
        per: dict[StrategyId, Limits] = {}
        for spec in specs:
            lim = spec.limits
            per[spec.strategy_id] = Limits(
                max_order_qty=lim.max_order_qty,
                max_order_notional=lim.max_order_notional,
                max_position_qty=lim.max_position,
                max_price_age=lim.max_quote_age,
            )
        return cls(account=account or Limits(), strategies=per)

    def for_strategy(self, strategy: StrategyId) -> Limits:
        own = self.strategies.get(strategy)
        if own is None:
            return self.account
        overrides = {
            f.name: value
            for f in dataclasses.fields(own)
            if (value := getattr(own, f.name)) != getattr(_DEFAULT_LIMITS, f.name)
        }
        return dataclasses.replace(self.account, **overrides)


def _add(exposure: Exposure, side: Side, qty: Decimal) -> Exposure:
    if side is Side.BUY:
        return dataclasses.replace(exposure, open_buy_qty=exposure.open_buy_qty + qty)
    return dataclasses.replace(exposure, open_sell_qty=exposure.open_sell_qty + qty)


class RiskGate:
    def __init__(
        self,
        *,
        limits: LimitsBook,
        market: MarketSource,
        portfolio: Portfolio,
        clock: Callable[[], datetime] = utc_now,
        refresh_interval_s: float = 0.25,
    ) -> None:
        self.limits = limits
        self.refresh_interval_s = refresh_interval_s
        self.market = market
        self.portfolio = portfolio
        self.clock = clock
        self._by_strategy: dict[tuple[StrategyId, Symbol], Exposure] = {}
        # Approved in the current batch, not yet committed.
        self._pending: dict[tuple[StrategyId, Symbol], Exposure] = defaultdict(Exposure)
        # Committed reservations the snapshot may not contain yet: (sequence, key, exposure).
        self._committed: list[tuple[int, tuple[StrategyId, Symbol], Exposure]] = []
        self._sequence = 0
        self._refreshed_at = float("-inf")
        self._seen_generation = -1
        self._submitted: dict[StrategyId, deque[datetime]] = defaultdict(deque)

    async def prepare(self) -> None:
        """Start a batch with a view of the ledger's exposure that misses nothing.

        Re-reading the ledger for every batch would cost a query per order under load, so the
        snapshot is refreshed at most every ``refresh_interval_s``. That is safe because every
        reservation committed since the snapshot's read began is kept on top of it; what can
        be stale is only what shrinks exposure (fills of resting orders move quantity from
        "open" to "position" on the same side; cancels and expiries release it).
        """
        self._pending.clear()
        unchanged = self.portfolio.generation == self._seen_generation
        if unchanged or monotonic() - self._refreshed_at < self.refresh_interval_s:
            return
        started = self._sequence
        self._seen_generation = self.portfolio.generation
        await self.portfolio.refresh()
        self._refreshed_at = monotonic()
        self._by_strategy = self.portfolio.snapshot()
        # Committed before the read began: the snapshot has them.
        self._committed = [c for c in self._committed if c[0] > started]

    def reserved(self) -> None:
        """The batch's reserve transaction is over: its approvals are now committed (or were
        refused, which only overstates exposure until the next refresh)."""
        for key, exposure in self._pending.items():
            self._sequence += 1
            self._committed.append((self._sequence, key, exposure))
        self._pending.clear()
        self.portfolio.mark_dirty()

    # -- views ---------------------------------------------------------------------------------

    def _market(self, symbol: Symbol) -> MarketView:
        quote = self.market.quote(symbol)
        if quote is None:
            return MarketView(symbol=symbol, bid=None, ask=None, received_at=None)
        return MarketView(
            symbol=symbol, bid=quote.bid, ask=quote.ask, received_at=quote.received_at
        )

    def _account(
        self, strategy: StrategyId, symbol: Symbol, *, without: Order | None = None
    ) -> AccountView:
        strategy_exposure: dict[Symbol, Exposure] = {}
        account_exposure: dict[Symbol, Exposure] = {}
        layers = (
            self._by_strategy.items(),
            ((key, exposure) for _, key, exposure in self._committed),
            self._pending.items(),
        )
        for layer in layers:
            for (sid, sym), exposure in layer:
                if sid == strategy:
                    strategy_exposure[sym] = _plus(strategy_exposure.get(sym, Exposure()), exposure)
                account_exposure[sym] = _plus(account_exposure.get(sym, Exposure()), exposure)
        if without is not None:
            # The final gate checks an order that is already counted as resting: take it out
            # once, or it would be counted against itself.
            own = without.remaining_qty
            for book in (strategy_exposure, account_exposure):
                current = book.get(without.symbol, Exposure())
                book[without.symbol] = _add(current, without.side, -own)
        marks: dict[Symbol, Decimal] = {}
        for sym in account_exposure:
            q = self.market.quote(sym)
            if q is not None:
                marks[sym] = q.mid
        recent: tuple[datetime, ...] = ()
        if self.limits.for_strategy(strategy).max_orders_per_minute is not None:
            window = self._submitted[strategy]
            now = self.clock()
            while window and now - window[0] > _RATE_WINDOW:
                window.popleft()
            recent = tuple(window)
        return AccountView(
            strategy_exposure=strategy_exposure,
            account_exposure=account_exposure,
            marks=marks,
            recent_order_times=recent,
        )

    # -- execution.RiskGate --------------------------------------------------------------------

    def assess(self, intent: OrderIntent, now: datetime) -> RiskAssessment:
        result = evaluate(
            intent,
            self._market(intent.symbol),
            self._account(intent.strategy_id, intent.symbol),
            self.limits.for_strategy(intent.strategy_id),
            now,
        )
        if result.approved:
            key = (intent.strategy_id, intent.symbol)
            self._pending[key] = _add(self._pending[key], intent.side, result.quantity)
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
        return evaluate(
            probe,
            self._market(order.symbol),
            self._account(order.strategy_id, order.symbol, without=order),
            self.limits.for_strategy(order.strategy_id),
            now,
        )

    def on_submitted(self, order: Order, now: datetime) -> None:
        if self.limits.for_strategy(order.strategy_id).max_orders_per_minute is not None:
            self._submitted[order.strategy_id].append(now)


def _plus(a: Exposure, b: Exposure) -> Exposure:
    return Exposure(
        position=a.position + b.position,
        open_buy_qty=a.open_buy_qty + b.open_buy_qty,
        open_sell_qty=a.open_sell_qty + b.open_sell_qty,
    )
