"""Giving an account up on purpose: the graceful hand-off.

An owner gives an account up when an operator asks (`tradectl release`, a ``release`` request
row its operator desk runs) or when a pool rebalances (``HandOff.give_up``). In order:

1. no new decisions: the strategies stop deciding (the host's ``may_trade`` is false);
2. in-flight work reaches a definite state: the intents already queued are processed and every
   order sent has its answer recorded, or ``UNKNOWN`` recorded when the answer is lost (the
   execution's drain, bounded), then one pass of lookups settles what it can;
3. the result (what is still unresolved) is recorded: on the request row, or in the operator
   journal with the reason, while the lease is still held (both writes are fenced);
4. ``done`` is set: the engine stops through its ordinary graceful shutdown, whose last step
   releases the lease, so the next owner takes it over at once, not after the TTL, and
   reconciles before it trades (its startup).

Resting orders stay on the venue: the next owner finds them in its startup reconciliation and
manages them from there.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import structlog

from engine.domain.types import ControlScope
from engine.exceptions import DatabaseUnavailable, VenueError
from engine.ledger.ledger import Ledger
from engine.ledger.records import Operator

log = structlog.get_logger("tradectl.handoff")

#: how long each of the two waits (drain, lookups) may take before the hand-off goes on anyway
GRACE_S = 5.0


class Drains(Protocol):
    async def drain(self) -> None: ...

    async def resolve_unresolved(self) -> int: ...


class HandOff:
    def __init__(
        self, ledger: Ledger, execution: Drains, *, holder: str, grace_s: float = GRACE_S
    ) -> None:
        self.ledger = ledger
        self.execution = execution
        self.holder = holder
        self.grace_s = grace_s
        #: set from step 1 on: the strategies stop deciding
        self.active = False
        #: set when the account may be given up: the engine stops and releases its lease
        self.done = asyncio.Event()

    async def prepare(self, reason: str) -> dict[str, Any]:
        """Steps 1 and 2; the result to record (step 3)."""
        self.active = True
        log.info("handoff.started", reason=reason)
        try:
            drained = await self._bounded(self.execution.drain())
            resolved = await self._bounded(self.execution.resolve_unresolved())
            left = await self.ledger.orders.unresolved()
        except BaseException:
            # not handed off (the ledger went away, say): the account keeps trading here
            self.active = False
            raise
        result: dict[str, Any] = {
            "ok": True,
            "released_by": self.holder,
            "in_flight_settled": drained,
            "lookups_done": resolved,
            "unresolved_orders": len(left),
        }
        if left:
            result["unresolved"] = [f"{o.client_order_id} {o.state.value}" for o in left[:20]]
        log.info("handoff.prepared", **result)
        return result

    def finish(self) -> None:
        """Step 4, after the result was recorded."""
        self.done.set()

    async def give_up(self, reason: str, *, actor: str) -> dict[str, Any]:
        """The whole hand-off for a caller that is not an operator request (a pool
        rebalancing): journaled with ``reason``, then the engine stops."""
        result = await self.prepare(reason)
        try:
            await self.ledger.journal.record(
                Operator(actor=actor, reason=reason),
                action="release",
                scope=ControlScope.ACCOUNT,
                target=self.ledger.account,
                outcome=f"released ({result['unresolved_orders']} order(s) left unresolved)",
                details=result,
            )
        except BaseException:
            self.active = False  # not recorded, not handed off: trading goes on here
            raise
        self.finish()
        return result

    async def _bounded(self, work: Any) -> bool:
        try:
            async with asyncio.timeout(self.grace_s):
                await work
            return True
        except TimeoutError:
            return False
        except (VenueError, DatabaseUnavailable) as exc:
            log.warning("handoff.step_failed", error=str(exc))
            return False


async def first_set(*events: asyncio.Event) -> None:
    """Return when any of ``events`` is set (the engine stops on its stop or a hand-off)."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
