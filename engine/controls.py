"""Single writer per account (the lease with epoch fencing), operator requests, loss halts.

The lease row is what the reserve transaction fences on: a process that lost it (another
engine took over after it expired) can no longer reserve, whatever it believes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from engine.domain.alerts import halted_alert, lease_lost_alert
from engine.domain.risk.loss_marks import TradingDay
from engine.domain.types import ControlKind, ControlScope, utc_now
from engine.exceptions import DatabaseUnavailable, LeaseLost, VenueError
from engine.handoff import HandOff
from engine.ledger.ledger import Ledger
from engine.ledger.records import OperatorRequest, OperatorRequestKind
from engine.metrics import error, lease_held
from engine.outage import AlwaysAvailable, LedgerState, ThrottledLog
from engine.tasks import wait_event

log = structlog.get_logger("tradectl.controls")


#: how often a standby looks whether the lease was released or expired
STANDBY_POLL_S = 0.25


def make_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseKeeper:
    def __init__(self, ledger: Ledger, *, ttl: timedelta, holder: str | None = None) -> None:
        self.ledger = ledger
        self.ttl = ttl
        self._holder = holder or make_holder()
        self._epoch: int | None = None
        self._lost = False
        self._lost_event = asyncio.Event()
        self._lost_reported = False
        self._lost_error: str | None = None
        self._throttled = ThrottledLog(log)

    @property
    def holder(self) -> str:
        return self._holder

    @property
    def epoch(self) -> int:
        if self._epoch is None:
            raise LeaseLost("the lease has not been acquired")
        return self._epoch

    @property
    def lost(self) -> bool:
        return self._lost

    async def acquire(self) -> int:
        """Take the lease, waiting as a standby while another live engine holds it."""
        announced = False
        while True:
            epoch = await self.ledger.leases.acquire(self._holder, self.ttl)
            if epoch is not None:
                self._epoch = epoch
                self._lost = False
                # every execution write of this ledger is fenced on this epoch from now on,
                # and one refused write stops the account as a failed renewal does
                self.ledger.fence.hold(self._holder, epoch)
                self.ledger.fence.on_refused = self._fenced_out
                lease_held(self.ledger.account, True)
                log.info("lease.acquired", holder=self._holder, epoch=epoch)
                return epoch
            if not announced:
                log.warning(
                    "lease.standby",
                    note="another engine holds this account's lease; taking over when it expires",
                    ttl_s=self.ttl.total_seconds(),
                )
                announced = True
            await self._until_free()

    async def _until_free(self) -> None:
        """A standby's wait: a lock-free read every STANDBY_POLL_S, so a released lease (a
        graceful hand-off) is taken within that, not after the TTL; at most ttl/3."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ttl.total_seconds() / 3
        while loop.time() < deadline:
            await asyncio.sleep(STANDBY_POLL_S)
            if await self.ledger.leases.free_for(self._holder):
                return

    async def keep(self) -> None:
        """Renew every ttl/3 until cancelled; return (lost) when renewal is refused."""
        while True:
            if await wait_event(self._lost_event, self.ttl.total_seconds() / 3):
                # a renewal elsewhere or a fenced write found it taken over
                if self._lost_error is not None:
                    await self.report_lost(self._lost_error)
                return
            try:
                await self.renew()
            except LeaseLost:
                return
            except DatabaseUnavailable as exc:
                # Keep trying: if the database stays away past the TTL, the reserve fence
                # refuses this process anyway, so nothing unsafe can follow from waiting.
                # Renewing an expired lease nobody took over keeps its epoch.
                self._throttled.warning("renew", "lease.renew_failed", error=str(exc))

    async def renew(self) -> None:
        """Renew once (also how a recovering engine confirms it still holds its epoch);
        LeaseLost when another process took it over, which also ends :meth:`keep`."""
        try:
            await self.ledger.leases.renew(self._holder, self.epoch, self.ttl)
        except LeaseLost as exc:
            self._mark_lost(exc)
            await self.report_lost(str(exc))
            raise

    def _mark_lost(self, exc: LeaseLost) -> None:
        if not self._lost:
            self._lost = True
            self._lost_error = str(exc)
            self._lost_event.set()
            lease_held(self.ledger.account, False)
            error(self.ledger.account, "lease")
            log.error("lease.lost", note="no new orders on this account", error=str(exc))

    def _fenced_out(self, exc: LeaseLost) -> None:
        """A write of this account was refused by the epoch fence: the lease is lost, and the
        lease task's end stops the account's execution."""
        log.error("lease.write_fenced_out", error=str(exc))
        self._mark_lost(exc)

    async def report_lost(self, error: str) -> None:
        """Raise the lease-lost alert, once per process, whoever found out first (a renewal
        here, or a reservation fenced out in execution). It is delivered by whichever engine
        runs the account next: the outbox is the account's."""
        if self._lost_reported:
            return
        self._lost_reported = True
        alert = lease_lost_alert(account=self.ledger.account, holder=self._holder, error=error)
        try:
            await self.ledger.alerts.add(alert)
        except DatabaseUnavailable as exc:
            # a database that failed too must not hide the LeaseLost that stops this engine
            log.error("alert.not_recorded", kind="lease_lost", error=str(exc))

    async def release(self) -> None:
        if self._epoch is not None and not self._lost:
            # not held from here on, whether or not the release reaches the ledger
            lease_held(self.ledger.account, False)
            await self.ledger.leases.release(self._holder, self._epoch)


async def halt_for_loss(
    ledger: Ledger, reason: str, *, day: TradingDay | None = None, now: datetime | None = None
) -> int:
    """A loss limit was crossed: a persistent account HALT (it survives restarts until an
    operator runs `tradectl unhalt`) and one incident per trading day (the account's
    ``day_timezone`` / ``day_start``, UTC midnight by default). Returns the incident id."""
    await ledger.controls.set(
        ControlScope.ACCOUNT,
        ledger.account,
        ControlKind.HALT,
        reason=reason,
        set_by="risk",
        alert=halted_alert(account=ledger.account, reason=reason),
    )
    # the date the trading day began on, in its own zone: a day starting 17:00 New York is one
    # day, though it spans two UTC dates
    trading = day or TradingDay()
    started = trading.start(now or utc_now()).astimezone(trading.zone)
    day_label = started.date().isoformat()
    incident = await ledger.incidents.open(
        kind="loss_limit",
        scope=f"account:{ledger.account}",
        severity="critical",
        message=(
            f"trading halted for account {ledger.account}: {reason}. Review the positions "
            "(`tradectl status`), then `tradectl unhalt --reason '…'` when trading may go on"
        ),
        details={"reason": reason, "day": day_label},
        dedupe_key=f"loss_limit:{ledger.account}:{day_label}",
    )
    error(ledger.account, "risk")
    log.error("account.halted_loss_limit", reason=reason, incident=incident.id)
    return incident.id


class Reconciles(Protocol):
    async def reconcile(
        self, *, startup: bool = False, accept_balances: bool = False
    ) -> ReconcileReportLike: ...


class ReconcileReportLike(Protocol):
    def as_json(self) -> dict[str, Any]: ...


class CancelsAll(Protocol):
    async def cancel_all(
        self, *, cause: str, strategy_id: str | None = None, symbol: str | None = None
    ) -> int: ...


class OperatorDesk:
    """Executes `tradectl reconcile` / `tradectl cancel-all` requested from other processes.

    Only the process holding the account's lease may write to the venue, so requests go
    through ``operator_requests`` and the lease holder runs them: the running engine polls
    every ``poll_s``; with no engine running, the CLI takes the lease and runs them itself.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        holder: str,
        reconciler: Reconciles,
        execution: CancelsAll,
        poll_s: float = 0.5,
        ledger_state: LedgerState | None = None,
        wakeup: asyncio.Event | None = None,
        handoff: HandOff | None = None,
    ) -> None:
        self.ledger = ledger
        self.holder = holder
        self.reconciler = reconciler
        self.execution = execution
        self.poll_s = poll_s
        #: requests wait while the ledger is away (they live in it anyway)
        self.ledger_state: LedgerState = ledger_state or AlwaysAvailable()
        #: set by the operator listener's NOTIFY: run requests now, not at the next poll
        self.wakeup = wakeup or asyncio.Event()
        #: runs `tradectl release` (engine/handoff.py); without one, release is refused
        self.handoff = handoff

    async def run(self) -> None:
        while True:
            if self.ledger_state.available:
                try:
                    await self.handle_pending()
                except DatabaseUnavailable as exc:
                    self.ledger_state.unavailable(exc, where="operator")
            await wait_event(self.wakeup, self.poll_s)
            self.wakeup.clear()

    async def handle_pending(self) -> int:
        handled = 0
        while (request := await self.ledger.operations.claim(self.holder)) is not None:
            result = await self.execute(request)
            await self.ledger.operations.complete(request.id, holder=self.holder, result=result)
            handled += 1
            if request.kind is OperatorRequestKind.RELEASE and result.get("ok"):
                assert self.handoff is not None
                self.handoff.finish()  # recorded under the lease: now stop and release it
                return handled
        return handled

    async def execute(self, request: OperatorRequest) -> dict[str, Any]:
        log.info(
            "operator.request",
            id=request.id,
            kind=request.kind.value,
            by=request.requested_by,
            reason=request.reason,
        )
        try:
            if request.kind is OperatorRequestKind.RELEASE:
                return await self._release(request)
            if request.kind is OperatorRequestKind.RECONCILE:
                report = await self.reconciler.reconcile(
                    accept_balances=bool(request.params.get("accept_balances"))
                )
                return {"ok": True, **report.as_json()}
            # Halts never block this: cancelling only makes exposure smaller.
            count = await self.execution.cancel_all(
                cause=f"tradectl cancel-all by {request.requested_by}: {request.reason}",
                strategy_id=request.params.get("strategy"),
                symbol=request.params.get("symbol"),
            )
            return {"ok": True, "cancels_requested": count}
        except (VenueError, DatabaseUnavailable) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    async def _release(self, request: OperatorRequest) -> dict[str, Any]:
        meant_for = request.params.get("holder")
        if meant_for is not None and meant_for != self.holder:
            # asked of an owner that has since died: this one just took the account over
            return {
                "ok": False,
                "error": f"asked of {meant_for}, which no longer holds the lease; "
                f"{self.holder} took the account over meanwhile and keeps it",
            }
        if self.handoff is None:
            return {"ok": False, "error": "this process cannot hand the account off"}
        return await self.handoff.prepare(f"{request.requested_by}: {request.reason}")
