"""The alerts no single ledger write raises: conditions that last (a venue connection down, an
order UNKNOWN for too long, a daily loss past half its limit, a low fill rate, unusual slippage),
watched by one engine task.

Each condition raises one alert per episode (it is raised again only after it cleared); the
delivery task's cooldown folds the repeats of a flapping one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol, runtime_checkable

import structlog

from engine.domain.alerts import (
    AlertDraft,
    disconnected_alert,
    fill_rate_alert,
    loss_warning,
    loss_warning_alert,
    partial_fill_alert,
    slippage_alert,
    unknown_order_alert,
)
from engine.domain.types import OrderState, utc_now
from engine.ledger.ledger import Ledger
from engine.risk_gate import RiskGate

log = structlog.get_logger("tradectl.alerts")

#: the fill rate is judged over the closed orders of this window, once it holds this many
FILL_RATE_WINDOW_S = 3600.0
FILL_RATE_MIN_ORDERS = 10
#: and looked at this often (a heavier query than the rest)
FILL_RATE_EVERY_S = 60.0
#: an order filled this much worse than its decision price is "unusual slippage"
DEFAULT_SLIPPAGE_BPS = Decimal(50)


@runtime_checkable
class ReportsConnection(Protocol):
    """A venue that can say since when its connection for our fills has been down."""

    def connection_lost(self) -> tuple[datetime, str] | None: ...


class AlertWatch:
    def __init__(
        self,
        ledger: Ledger,
        *,
        venue: object,
        gate: RiskGate | None,
        disconnect_s: float,
        unknown_s: float,
        slippage_bps: Decimal = DEFAULT_SLIPPAGE_BPS,
        interval_s: float = 1.0,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.ledger = ledger
        self.venue = venue
        self.gate = gate
        self.disconnect_s = disconnect_s
        self.unknown_s = unknown_s
        self.slippage_bps = slippage_bps
        self.interval_s = interval_s
        self.clock = clock
        #: the conditions alerted on and not cleared since
        self._raised: set[str] = set()
        self._fill_rates_at: datetime | None = None
        self._slippage_at: datetime | None = None
        self._started = clock()

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.interval_s)

    async def check(self) -> None:
        now = self.clock()
        await self._connection(now)
        await self._orders(now)
        await self._daily_loss(now)
        await self._fill_rates(now)
        await self._slippage(now)

    async def _raise(self, key: str, draft: AlertDraft) -> None:
        if key in self._raised:
            return
        await self.ledger.alerts.add(draft)
        self._raised.add(key)

    def _clear(self, prefix: str, still: set[str]) -> None:
        self._raised -= {k for k in self._raised if k.startswith(prefix) and k not in still}

    async def _connection(self, now: datetime) -> None:
        if not isinstance(self.venue, ReportsConnection):
            return
        lost = self.venue.connection_lost()
        key = "venue_disconnected"
        if lost is None:
            self._clear(key, set())
            return
        since, reason = lost
        down_s = (now - since).total_seconds()
        if down_s >= self.disconnect_s:
            await self._raise(
                key,
                disconnected_alert(
                    account=self.ledger.account,
                    venue=self.ledger.venue,
                    down_s=down_s,
                    error=reason or "connection refused",
                ),
            )

    async def _orders(self, now: datetime) -> None:
        late: set[str] = set()
        partial: set[str] = set()
        for order in await self.ledger.orders.non_terminal():
            key = f"partial_fill:{order.client_order_id}"
            if key in self._raised:
                partial.add(key)
            elif order.state is OrderState.PARTIALLY_FILLED:
                partial.add(key)
                await self._raise(
                    key,
                    partial_fill_alert(
                        client_order_id=order.client_order_id,
                        strategy_id=order.strategy_id,
                        symbol=order.symbol,
                        filled=order.filled_qty,
                        requested=order.requested_qty,
                    ),
                )
            if order.state is not OrderState.UNKNOWN:
                continue
            since = order.submitted_at or order.created_at
            age_s = (now - since).total_seconds()
            if age_s < self.unknown_s:
                continue
            key = f"order_unknown:{order.client_order_id}"
            late.add(key)
            await self._raise(
                key,
                unknown_order_alert(
                    client_order_id=order.client_order_id,
                    symbol=order.symbol,
                    since=since,
                    age_s=age_s,
                ),
            )
        self._clear("order_unknown:", late)
        # once per order while it is open, whatever it does next (forgotten once it closed)
        self._clear("partial_fill:", partial)

    async def _fill_rates(self, now: datetime) -> None:
        if self._fill_rates_at is not None and (
            (now - self._fill_rates_at).total_seconds() < FILL_RATE_EVERY_S
        ):
            return
        self._fill_rates_at = now
        since = now - timedelta(seconds=FILL_RATE_WINDOW_S)
        low: set[str] = set()
        for strategy, orders, requested, filled in await self.ledger.alerts.fill_rates(
            since=since, min_orders=FILL_RATE_MIN_ORDERS
        ):
            draft = fill_rate_alert(
                strategy_id=strategy,
                orders=orders,
                requested=requested,
                filled=filled,
                window_s=FILL_RATE_WINDOW_S,
            )
            if draft is not None:
                key = f"fill_rate:{strategy}"
                low.add(key)
                await self._raise(key, draft)
        self._clear("fill_rate:", low)

    async def _slippage(self, now: datetime) -> None:
        # fills are looked at with the fill rates' cadence, over two periods: an order whose
        # fills landed just before a pass is still seen by the next one (and alerted once)
        if self._slippage_at is not None and (
            (now - self._slippage_at).total_seconds() < FILL_RATE_EVERY_S
        ):
            return
        self._slippage_at = now
        # not before this watch started: a previous run's fills were its to judge
        since = max(now - timedelta(seconds=2 * FILL_RATE_EVERY_S), self._started)
        seen: set[str] = set()
        for (
            coid,
            strategy,
            symbol,
            buy,
            reference,
            name,
            avg,
        ) in await self.ledger.alerts.filled_against_decision(since=since):
            key = f"slippage:{coid}"
            seen.add(key)
            draft = slippage_alert(
                client_order_id=coid,
                strategy_id=strategy,
                symbol=symbol,
                buy=buy,
                reference=reference,
                reference_name=name,
                avg_price=avg,
                threshold_bps=self.slippage_bps,
            )
            if draft is not None:
                await self._raise(key, draft)
        self._clear("slippage:", seen)

    async def _daily_loss(self, now: datetime) -> None:
        if self.gate is None:
            return
        loss = self.gate.daily_loss()
        if loss is None:
            return
        fraction = loss_warning(*loss)
        if fraction is None:
            return
        # once per trading day: the loss only resets with the day
        await self._raise(
            f"daily_loss:{now.date().isoformat()}",
            loss_warning_alert(
                account=self.ledger.account,
                scope=f"account:{self.ledger.account}",
                loss=loss[0],
                limit=loss[1],
                fraction=fraction,
            ),
        )
