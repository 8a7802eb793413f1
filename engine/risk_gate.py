"""The risk gate at the execution boundary: builds the views the pure checks need.

:func:`engine.domain.risk.evaluate` is pure; this module supplies it with the newest market view
(the conflator), the strategy's and the account's exposure (the ledger, through
:class:`~engine.portfolio.Portfolio`), and the limits (per account, overridden per strategy).

Exposure is snapshotted once per batch (:meth:`RiskGate.prepare`), after the ledger has every
earlier reservation and fill. Intents approved in the batch are added to an overlay on top of
the snapshot, so two intents in one batch cannot together exceed a limit each fits alone.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
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
    ) -> None:
        self.limits = limits
        self.market = market
        self.portfolio = portfolio
        self.clock = clock
        self._by_strategy: dict[tuple[StrategyId, Symbol], Exposure] = {}
        # approved in this batch, not yet in the snapshot
        self._overlay: dict[tuple[StrategyId, Symbol], Exposure] = defaultdict(Exposure)
        self._submitted: dict[StrategyId, deque[datetime]] = defaultdict(deque)

    async def prepare(self) -> None:
        """Start a batch: snapshot the ledger's exposure (refreshed if anything changed)."""
        await self.portfolio.refresh_if_dirty()
        self._by_strategy = self.portfolio.snapshot()
        self._overlay.clear()

    def reserved(self) -> None:
        """The batch's reservations are committed: the next snapshot must re-read them."""
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
        for layer in (self._by_strategy, self._overlay):
            for (sid, sym), exposure in layer.items():
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
        window = self._submitted[strategy]
        now = self.clock()
        while window and now - window[0] > _RATE_WINDOW:
            window.popleft()
        return AccountView(
            strategy_exposure=strategy_exposure,
            account_exposure=account_exposure,
            marks=marks,
            recent_order_times=tuple(window),
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
            self._overlay[key] = _add(self._overlay[key], intent.side, result.quantity)
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
        self._submitted[order.strategy_id].append(now)


def _plus(a: Exposure, b: Exposure) -> Exposure:
    return Exposure(
        position=a.position + b.position,
        open_buy_qty=a.open_buy_qty + b.open_buy_qty,
        open_sell_qty=a.open_sell_qty + b.open_sell_qty,
    )
