"""What execution needs from the risk gate and the lease, as protocols (implemented by
:mod:`engine.risk_gate` and :mod:`engine.controls`)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from engine.domain.intents import OrderIntent
from engine.domain.orders import Order
from engine.domain.risk import RiskAssessment


class RiskGate(Protocol):
    """Pre-trade checks at the execution boundary (see :mod:`engine.risk_gate`)."""

    async def prepare(self) -> None:
        """Before a batch: take in every reservation and fill the ledger has."""
        ...

    def assess(self, intent: OrderIntent, now: datetime) -> RiskAssessment: ...

    def reserved(self) -> None:
        """After a batch's reserve transaction committed."""
        ...

    def recheck(self, order: Order, now: datetime) -> RiskAssessment:
        """The final gate: freshness and limits again on the newest state, before the wire."""
        ...

    def on_submitted(self, order: Order, now: datetime) -> None: ...


class Lease(Protocol):
    @property
    def holder(self) -> str: ...

    @property
    def epoch(self) -> int: ...

    @property
    def lost(self) -> bool: ...
