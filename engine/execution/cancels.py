"""Cancels: a cancel request recorded before it is sent, then the venue's answer applied.

Halts and pauses never stop a cancel: it only makes exposure smaller. An answer that says the
order is gone (filled, canceled, never placed) is settled by a lookup, an ambiguous one by the
resolver; neither is guessed.
"""

from __future__ import annotations

import structlog

from engine.crashpoints import CrashPoint, CrashPoints
from engine.domain.orders import Order
from engine.domain.types import OrderState
from engine.exceptions import Definitive, NotFound, StateConflict, VenueError
from engine.execution.order_log import bound_to
from engine.execution.recovery import Recovery
from engine.metrics import ExecutionMetrics

log = structlog.get_logger("tradectl.execution")


class Cancels(Recovery):
    """Mixed into :class:`~engine.execution.core.Execution`."""

    crash: CrashPoints
    metrics: ExecutionMetrics

    async def cancel_order(self, order: Order, *, cause: str) -> None:
        """Request a cancel. Halts do not stop cancels: they only make exposure smaller."""
        with bound_to(order):
            await self._cancel_order(order, cause=cause)

    async def _cancel_order(self, order: Order, *, cause: str) -> None:
        if order.state is not OrderState.PENDING_CANCEL:
            try:
                order = await self.ledger.orders.request_cancel(order.client_order_id, cause)
                log.info("order.cancel_requested", cause=cause)
            except StateConflict:
                # A stream report moved it on since it was read (typically: it filled). Act on
                # the current state: a terminal order has nothing left to cancel.
                current = await self.ledger.orders.get(order.client_order_id)
                if current is not None and not current.state.is_terminal:
                    await self.cancel_order(current, cause=cause)
                return
        try:
            report = await self.venue.cancel(order.symbol, order.client_order_id)
        except (NotFound, Definitive):
            # Already gone (filled, canceled, never placed): the lookup tells which.
            await self._resolve_one(order)
            return
        except VenueError as exc:
            log.warning("order.cancel_unknown", error=str(exc))
            self._resolve_wakeup.set()
            return
        self.crash.hit(CrashPoint.AFTER_CANCEL_BEFORE_ACK)
        updated = await self.ledger.orders.apply_report(report, cause="cancel acknowledged")
        self.metrics.fills(report.fills, updated)
        if updated is not None:
            # the venue's answer may be that the order filled first
            state = updated.state
            log.info(
                "order.canceled" if state is OrderState.CANCELED else "order.cancel_answered",
                state=state.value,
            )
        await self.fetch_missing_fills(report, updated)

    async def cancel_all(
        self, *, cause: str, strategy_id: str | None = None, symbol: str | None = None
    ) -> int:
        """Cancel every working order (optionally of one strategy or symbol). Orders still
        ``PENDING_SUBMIT`` are left to the resolver: a cancel cannot name what the venue may
        not have yet, and the lookup settles them."""
        orders = [
            o
            for o in await self.ledger.orders.non_terminal()
            if o.state is not OrderState.PENDING_SUBMIT
            and (strategy_id is None or o.strategy_id == strategy_id)
            and (symbol is None or o.symbol == symbol)
        ]
        for order in orders:
            await self.cancel_order(order, cause=cause)
        return len(orders)
