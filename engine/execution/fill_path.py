"""The user stream applied to the ledger: fills, order reports and balances, idempotently.

Its own task, so fills and reports never wait behind intents or market data. What this process
committed itself is remembered (bounded) so that the same fact arriving again by ACK, stream and
trade query costs no write.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import structlog

from engine.crashpoints import CrashPoint
from engine.domain.orders import Order, target_state
from engine.domain.types import Asset, ClientOrderId
from engine.exceptions import AuthFailed, DatabaseUnavailable
from engine.ledger.ledger import Ledger
from engine.metrics import error
from engine.venues.base import BalanceReport, FillReport, OrderReport, StreamReconnected, UserEvent

if TYPE_CHECKING:
    from engine.execution.core import Execution

log = structlog.get_logger("tradectl.execution")

#: how long the user stream waits after the venue refused our credentials before trying again
AUTH_RETRY_S = 30.0


class FillPath:
    """Applies the user stream: fills, order reports and balances, each idempotently."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        execution: Execution,
        on_reconnect: Callable[[], None] | None = None,
        on_auth_failed: Callable[[AuthFailed], Awaitable[None]] | None = None,
        auth_retry_s: float = AUTH_RETRY_S,
    ) -> None:
        self.ledger = ledger
        self.execution = execution
        self.crash = execution.crash
        self.on_reconnect = on_reconnect
        #: the venue refused the credentials on the user stream: halt the account (the engine
        #: keeps running for cancels and reconciliation), then try the stream again later
        self.on_auth_failed = on_auth_failed
        self.auth_retry_s = auth_retry_s
        #: the newest balance per asset the stream reported
        self.balances: dict[Asset, BalanceReport] = {}
        #: venue events not recorded because the ledger was away (re-fetched by reconcile)
        self.skipped = 0

    async def run(self) -> None:
        while True:
            try:
                await self._consume()
                return
            except AuthFailed as exc:
                if self.on_auth_failed is None:
                    raise
                log.error("user_stream.auth_failed", error=str(exc))
                await self.on_auth_failed(exc)
            await asyncio.sleep(self.auth_retry_s)
            if self.on_reconnect is not None:
                self.on_reconnect()  # whatever it missed is fetched before anyone decides

    async def _consume(self) -> None:
        async for event in self.execution.venue.user_stream():
            try:
                await self.apply(event)
            except DatabaseUnavailable as exc:
                # Nothing is lost: the venue keeps the fill, and the reconcile that ends the
                # outage (or the next periodic one) fetches it by trade id.
                self.skipped += 1
                self.execution.ledger_state.unavailable(exc, where="fills")
                if self.on_reconnect is not None:
                    self.on_reconnect()
            except Exception:
                error(self.execution.config.account, "fills")
                # One event the ledger refuses (a report it cannot place, say) must not stop
                # every later fill from being recorded: log it whole, reconcile from the venue.
                log.exception("venue_event.apply_failed", venue_event=repr(event))
                if self.on_reconnect is not None:
                    self.on_reconnect()

    async def apply(self, event: UserEvent) -> None:
        committed = self.execution.committed
        if isinstance(event, FillReport | OrderReport):
            # An order still being sent: its ACK (which carries the same facts, usually) is
            # about to commit; after it this event is most often a no-op instead of a second
            # write racing the first for the order's row.
            await self.execution.ack_settled(event.client_order_id)
        if isinstance(event, FillReport):
            if committed.has_fill(event):
                return  # this process already committed it (e.g. with the ACK)
            self.crash.hit(CrashPoint.AFTER_FILL_BEFORE_COMMIT)
            inserted = await self.ledger.fills.append([event])
            committed.remember_fills(inserted)
            self.execution.on_fills(inserted)
        elif isinstance(event, OrderReport):
            if committed.adds_nothing(event):
                return
            if event.fills:
                self.crash.hit(CrashPoint.AFTER_FILL_BEFORE_COMMIT)
            order = await self.ledger.orders.apply_report(event, cause="stream")
            if order is not None:
                committed.remember(order, event.fills)
            self.execution.on_fills(event.fills)
            await self.execution.fetch_missing_fills(event, order)
        elif isinstance(event, BalanceReport):
            # Venues push a balance update with every fill; writing each would double the
            # ledger's work per order. Keep the newest per asset; the reconciler records
            # snapshots (and a restart re-reads them from the venue anyway).
            self.balances[event.asset] = event
        elif isinstance(event, StreamReconnected):
            log.info("user_stream.reconnected", reason=event.reason)
            if self.on_reconnect is not None:
                self.on_reconnect()


class CommittedFacts:
    """What this process has itself committed to the ledger, recently (bounded).

    Venues repeat themselves: a fill comes with the ACK, again on the user stream, and again
    from the trades query. Skipping a stream event is safe only when the ledger already holds
    everything it says, which this process knows for the orders and fills it wrote itself.
    Anything not remembered (older, or written by another process) goes to the ledger, whose
    writes are idempotent anyway.
    """

    def __init__(self, account: str, capacity: int = 20_000) -> None:
        #: a trade id identifies a fill only within one account (as in the ledger's unique key);
        #: the account is part of the key so a shared instance could never merge two accounts
        self.account = account
        self.capacity = capacity
        self._orders: OrderedDict[ClientOrderId, Order] = OrderedDict()
        self._fills: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()

    def remember(self, order: Order, fills: Iterable[FillReport] = ()) -> None:
        self._orders[order.client_order_id] = order
        self._orders.move_to_end(order.client_order_id)
        while len(self._orders) > self.capacity:
            self._orders.popitem(last=False)
        self.remember_fills(fills)

    def remember_fills(self, fills: Iterable[FillReport]) -> None:
        for fill in fills:
            self._fills[self._key(fill)] = None
        while len(self._fills) > self.capacity:
            self._fills.popitem(last=False)

    def _key(self, fill: FillReport) -> tuple[str, str, str, str]:
        return (self.account, fill.venue, fill.symbol, fill.trade_id)

    def has_fill(self, fill: FillReport) -> bool:
        return self._key(fill) in self._fills

    def adds_nothing(self, report: OrderReport) -> bool:
        order = self._orders.get(report.client_order_id)
        if order is None or order.venue_order_id is None:
            return False
        if not all(self.has_fill(f) for f in report.fills):
            return False
        implied = target_state(
            order.state, report.status, report.filled_quantity, order.requested_qty
        )
        return implied is order.state and report.filled_quantity <= order.filled_qty
