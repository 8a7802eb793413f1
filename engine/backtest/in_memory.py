"""The in-memory execution path: a replay's orders go straight to the paper venue, with no
ledger, risk gate or lease."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime

from engine.backtest.execution_path import MAX_REJECTION_SAMPLES
from engine.domain.intents import Buy, Cancel, Hold, Sell
from engine.domain.records import builder
from engine.domain.types import ClientOrderId, OrderType
from engine.exceptions import Definitive, NotFound
from engine.venues.base import InstrumentRules, OrderRequest
from engine.venues.paper import PaperVenue


class PaperPath:
    """Orders straight to the paper venue: the execution coroutine's outcome, without its
    ledger. Quantities and prices are rounded to the instrument's grid first."""

    def __init__(self, venue: PaperVenue, rules: InstrumentRules, clock: Callable[[], datetime]):
        self.venue = venue
        self.rules = rules
        self.clock = clock
        self._rejected: list[str] = []

    async def start(self) -> None:
        pass

    async def heartbeat(self) -> None:
        pass

    async def decided(self, intent: Hold | Cancel) -> None:
        if isinstance(intent, Cancel):
            # NotFound means already closed: the same answer the live path accepts.
            with contextlib.suppress(NotFound):
                await self.venue.cancel(intent.symbol, intent.client_order_id)

    async def submit(self, orders: Sequence[tuple[Buy | Sell, ClientOrderId]]) -> None:
        for intent, coid in orders:
            request = _request(intent, coid, self.rules)
            if request.quantity <= 0:
                self._reject(request, "quantity rounds to zero at the step size")
                continue
            try:
                # in one process nothing else runs meanwhile: no turn of the event loop, and
                # the fills are read from the venue (Replay._fold_fills), not from a report
                self.venue.submit_now(request)
            except Definitive as exc:
                self._reject(request, str(exc))

    def _reject(self, request: OrderRequest, reason: str) -> None:
        self._rejected.append(
            f"{self.clock().isoformat()} {request.side} {request.quantity} {request.symbol}: "
            f"{reason}"
        )

    async def settle(self) -> None:
        pass

    async def rejections(self) -> tuple[int, list[str]]:
        return len(self._rejected), self._rejected[:MAX_REJECTION_SAMPLES]

    async def close(self) -> None:
        pass


def _request(intent: Buy | Sell, coid: ClientOrderId, rules: InstrumentRules) -> OrderRequest:
    price = (
        None if intent.limit_price is None else rules.round_price(intent.limit_price, intent.side)
    )
    return _ORDER_REQUEST(  # OrderRequest's fields in order: no keyword parsing per order
        coid,
        intent.symbol,
        intent.side,
        OrderType.MARKET if price is None else OrderType.LIMIT,
        rules.round_quantity(intent.quantity),
        price,  # limit_price
        intent.time_in_force,
    )


_ORDER_REQUEST = builder(OrderRequest)
