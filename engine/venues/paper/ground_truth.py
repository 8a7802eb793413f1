"""What the paper venue saw, for tests to check the engine against."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from engine.domain.types import ClientOrderId
from engine.venues.base import OrderReport


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperOrders:
    """Ground truth for tests: every order the venue ever accepted, and every submit it saw."""

    #: every accepted order in acceptance order, each in its current state
    orders: tuple[OrderReport, ...]
    #: how many orders the venue accepted (placed) per client order id; 0 for an id never
    #: placed. More than 1 only after legitimate reuse of a closed id, or a duplicated order.
    attempts: Counter[ClientOrderId]
    #: submit calls that reached the venue per client order id, accepted or refused (a submit
    #: failed with ``fail_next_submit_before_accept`` never reached it)
    submits: Counter[ClientOrderId]

    def accepted(self, client_order_id: ClientOrderId) -> tuple[OrderReport, ...]:
        """The orders accepted with this client order id (more than one only after reuse)."""
        return tuple(o for o in self.orders if o.client_order_id == client_order_id)
