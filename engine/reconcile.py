"""Reconciliation: at startup before any strategy trades, periodically, and after reconnects.

The one automatic repair is appending missing fills (unambiguous: the venue's trade ids). Every
other mismatch is reported, not guessed at: the affected scope is paused and an incident says
what to check and what to run. Incidents are deduplicated per mismatch, so a mismatch that
persists across cycles is one incident, not one per cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog

from engine.domain.ids import is_ours
from engine.domain.types import ControlKind, ControlScope, OrderState
from engine.exceptions import DatabaseUnavailable, VenueError
from engine.execution import Execution
from engine.ledger.store import Ledger

log = structlog.get_logger("tradectl.reconcile")

_ACKNOWLEDGED = frozenset({OrderState.OPEN, OrderState.PARTIALLY_FILLED})


@dataclass(slots=True)
class ReconcileReport:
    orders_looked_up: int = 0
    fills_added: int = 0
    unknown_orders: list[str] = field(default_factory=list)
    incidents: list[int] = field(default_factory=list)


class Reconciler:
    def __init__(
        self, *, ledger: Ledger, execution: Execution, prefix: str, balance_tolerance: str
    ) -> None:
        self.ledger = ledger
        self.execution = execution
        self.prefix = prefix
        self.balance_tolerance = balance_tolerance
        self._wake = asyncio.Event()

    def request(self) -> None:
        """Ask for a pass soon (after a stream reconnect or a failed write)."""
        self._wake.set()

    async def run_periodic(self, interval_s: float) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval_s)
            self._wake.clear()
            try:
                await self.reconcile()
            except (DatabaseUnavailable, VenueError) as exc:
                log.warning("reconciliation pass failed; will retry", error=str(exc))

    async def reconcile(self, *, startup: bool = False) -> ReconcileReport:
        report = ReconcileReport()
        report.orders_looked_up = await self.execution.resolve_unresolved(force=startup)
        report.fills_added = await self.execution.sync_fills()
        await self._venue_open_orders(report)
        await self.ledger.record_balances(await self.execution.venue.balances())
        if report.fills_added or report.unknown_orders:
            log.info(
                "reconciled",
                fills_added=report.fills_added,
                unknown_orders=report.unknown_orders,
                startup=startup,
            )
        return report

    async def _venue_open_orders(self, report: ReconcileReport) -> None:
        venue_open = await self.execution.venue.open_orders()
        await self._closed_on_the_venue({o.client_order_id for o in venue_open})
        for venue_order in venue_open:
            coid = venue_order.client_order_id
            if not is_ours(self.prefix, coid):
                continue  # a manual order: not ours to judge
            known = await self.ledger.get_order(coid)
            if known is None:
                report.unknown_orders.append(coid)
                reason = (
                    f"venue has an open order {coid} on {venue_order.symbol} with our prefix "
                    "that the ledger does not know"
                )
                await self.ledger.set_control(
                    ControlScope.SYMBOL,
                    venue_order.symbol,
                    ControlKind.PAUSE,
                    reason=reason,
                    set_by="reconciler",
                )
                incident = await self.ledger.open_incident(
                    kind="unknown_venue_order",
                    scope=f"symbol:{venue_order.symbol}",
                    severity="error",
                    message=(
                        f"symbol {venue_order.symbol} paused: {reason}. Check it on the venue "
                        f"(cancel it there if it is not wanted), then `tradectl resume --symbol "
                        f"{venue_order.symbol}` and resolve this incident"
                    ),
                    details={
                        "client_order_id": coid,
                        "venue_order_id": venue_order.venue_order_id,
                        "side": venue_order.side.value,
                        "quantity": str(venue_order.quantity),
                        "status": venue_order.status.value,
                    },
                    dedupe_key=f"unknown_venue_order:{coid}",
                )
                report.incidents.append(incident.id)
            elif known.state.is_terminal:
                # The ledger closed an order the venue still shows open: let the lookup apply
                # whatever the venue says (a terminal state never moves back; the event is kept).
                await self.ledger.apply_report(venue_order, cause="reconcile: venue shows open")

    async def _closed_on_the_venue(self, venue_open: set[str]) -> None:
        """An acknowledged order the venue no longer lists as open closed while its report was
        lost (a crash before the commit, a dropped stream report): look it up, which applies
        its final state and brings its fills. Nothing else would: only unresolved orders are
        looked up on their own."""
        for order in await self.ledger.non_terminal_orders():
            if order.state in _ACKNOWLEDGED and order.client_order_id not in venue_open:
                await self.execution.resolve_order(order)
