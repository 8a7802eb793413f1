"""Steps 4-5 of the protocol for one reserved order: the final gate, the submit, and the
venue's answer recorded (mixed into :class:`~engine.execution.core.Execution`).

ACKs go through a :class:`~engine.execution.group_commit.GroupCommit`: the orders answered
while one ACK commits are written together in the next transaction. A stream report of an
order still being sent waits for its ACK (:meth:`Sending.ack_settled`) instead of racing it
with a second write of the same facts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime

import structlog

from engine.crashpoints import CrashPoint, CrashPoints
from engine.domain.alerts import rate_limited_alert
from engine.domain.orders import Order
from engine.domain.risk import RiskAssessment
from engine.domain.types import ClientOrderId
from engine.exceptions import (
    Ambiguous,
    AuthFailed,
    DatabaseUnavailable,
    Definitive,
    LeaseLost,
    RateLimited,
    VenueError,
)
from engine.execution.config import ExecutionConfig
from engine.execution.fill_path import CommittedFacts
from engine.execution.group_commit import GroupCommit
from engine.execution.protocols import RiskGate
from engine.ledger.ledger import Ledger
from engine.ledger.reports import Ack
from engine.metrics import ExecutionMetrics, error
from engine.outage import LedgerState
from engine.venue_guard import halt_for_auth
from engine.venues.base import FillReport, OrderRequest, Venue

log = structlog.get_logger("tradectl.execution")

#: how long a stream report of an order in flight waits for its ACK before it is applied anyway
#: (the send is bounded by the venue's timeout; this only bounds a stalled stream)
ACK_WAIT_S = 5.0


class Sending:
    """Mixed into :class:`~engine.execution.core.Execution`."""

    ledger: Ledger
    venue: Venue
    config: ExecutionConfig
    clock: Callable[[], datetime]
    crash: CrashPoints
    committed: CommittedFacts
    metrics: ExecutionMetrics
    ledger_state: LedgerState
    credential: str
    gate: RiskGate
    on_fills: Callable[[Sequence[FillReport]], None]
    _in_flight: set[ClientOrderId]
    _resolve_wakeup: asyncio.Event

    def _init_sending(self) -> None:
        self.acks: GroupCommit[Ack, Order] = GroupCommit(
            lambda acks: self.ledger.orders.record_acks(acks)
        )
        #: orders being sent now, set once the send has its answer recorded (or gave up)
        self._sending: dict[ClientOrderId, asyncio.Event] = {}
        #: for an order whose send ended without a recorded answer: when that send gave up, the
        #: latest its request can have been signed (a rate-budget wait can sign it long after
        #: ``submitted_at``); the resolver resends only ``late_accept`` after that
        self.sent_until: dict[ClientOrderId, datetime] = {}

    async def ack_settled(self, client_order_id: ClientOrderId | None) -> None:
        """Return once an order this process is sending has its answer committed (at once
        for any other order), so a stream report of it finds the ACK's facts."""
        done = self._sending.get(client_order_id) if client_order_id is not None else None
        if done is None:
            return
        # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancellation that arrives as
        # the wait ends (the send finishing while the engine stops), and the stop hangs
        try:
            async with asyncio.timeout(ACK_WAIT_S):
                await done.wait()
        except TimeoutError:
            log.warning("order.ack_wait_timed_out", client_order_id=client_order_id)

    async def _send(self, order: Order) -> None:
        """Steps 4-5 for one reserved order. Only ``BaseException`` (a simulated crash) escapes."""
        coid = order.client_order_id
        self._in_flight.add(coid)
        sent = self._sending[coid] = asyncio.Event()
        answered = False
        try:
            now = self.clock()
            final = self.gate.recheck(order, now)
            if not final.approved:
                self.metrics.refused_at_final_gate(order.strategy_id, final.rejections)
                # Nothing was sent for this id in this attempt. A fresh reservation was never on
                # the wire, so it can expire at once; a resubmission only reaches here after a
                # lookup found nothing past the consistency window.
                reason = f"final gate before submit: {_summary(final)}"
                await self.ledger.orders.expire(coid, reason)
                log.info("order.expired", reason=reason)
                answered = True
                return
            request = OrderRequest(
                client_order_id=coid,
                symbol=order.symbol,
                side=order.side,
                type=order.type,
                quantity=order.requested_qty,
                limit_price=order.limit_price,
                time_in_force=order.time_in_force,
            )
            submitted_at = self.clock()
            # before the call: its answer (or a crash) may never come, and this line says when
            # the order went out
            log.debug("order.submitted")
            try:
                report = await self.venue.submit(request)
            except Definitive as exc:
                await self.ledger.orders.mark_rejected(
                    coid, _error_text(exc), submitted_at=submitted_at
                )
                log.warning("order.rejected", error=_error_text(exc))
                answered = True
                return
            except AuthFailed as exc:
                await self.ledger.orders.mark_rejected(
                    coid, _error_text(exc), submitted_at=submitted_at
                )
                answered = True
                log.warning("order.rejected", error=_error_text(exc))
                await self._halt_for_auth(exc)
                return
            except (Ambiguous, RateLimited) as exc:
                # Maybe placed (or, for 429, refused but we take no chances): look it up later.
                await self.ledger.orders.mark_unknown(
                    coid, _error_text(exc), submitted_at=submitted_at
                )
                log.warning("order.unknown", error=_error_text(exc))
                self._resolve_wakeup.set()
                if isinstance(exc, RateLimited):
                    await self.ledger.alerts.add(
                        rate_limited_alert(
                            account=self.config.account,
                            venue=self.venue.name,
                            error=_error_text(exc),
                            retry_after_s=exc.retry_after,
                        )
                    )
                return
            except Exception as exc:
                error(self.config.account, "execution")
                log.exception("order.unknown", error=f"unexpected: {type(exc).__name__}")
                await self.ledger.orders.mark_unknown(
                    coid, f"unexpected: {type(exc).__name__}: {exc}", submitted_at=submitted_at
                )
                self._resolve_wakeup.set()
                return
            self.metrics.acked(order, self.clock())
            self.gate.on_submitted(order, submitted_at)
            self.crash.hit(CrashPoint.AFTER_SUBMIT_BEFORE_ACK)
            acked = await self.acks.submit(Ack(coid, report, submitted_at))
            answered = True
            log.debug(
                "order.acknowledged", venue_order_id=acked.venue_order_id, state=acked.state.value
            )
            self.committed.remember(acked, report.fills)
            if report.fills:
                self.on_fills(report.fills)
        except (DatabaseUnavailable, LeaseLost) as exc:
            # The venue may hold the order; the ledger says PENDING_SUBMIT/UNKNOWN, which the
            # resolver (or the next start) settles by lookup.
            if isinstance(exc, DatabaseUnavailable):
                self.ledger_state.unavailable(exc, where="send")
            error(self.config.account, "execution")
            log.error("order.left_for_resolution", error=str(exc))
        except Exception:
            error(self.config.account, "execution")
            log.exception("order.left_for_resolution")
        finally:
            if answered:
                self.sent_until.pop(coid, None)
            else:
                self.sent_until[coid] = self.clock()
            self._in_flight.discard(coid)
            if self._sending.get(coid) is sent:
                del self._sending[coid]
            sent.set()

    async def _halt_for_auth(self, exc: AuthFailed) -> None:
        await halt_for_auth(
            self.ledger, self.config.account, exc, where="submit", key=self.credential
        )


def _summary(assessment: RiskAssessment) -> str:
    failed = assessment.rejections
    return "; ".join(f"{v.check}: {v.message or v.observed}" for v in failed) or "approved"


def _error_text(exc: VenueError) -> str:
    code = f" (code {exc.code})" if exc.code is not None else ""
    return f"{type(exc).__name__}: {exc}{code}"
