"""The final gate of a running engine against the built-in Binance-protocol simulator: an order
reserved on a fresh quote whose quote is stale by the time it would be sent expires unsent, the
check named (the paper-venue version: test_final_gate.py)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.engine import URL

from engine.crashpoints import CrashPoint, CrashPoints
from engine.domain.ids import client_order_id
from engine.domain.types import OrderState, utc_now
from tests.helpers import eventually
from tests.integration.test_portfolio_limits_engine import BTC, A, buy, decide, running


class ShiftedClock:
    """The engine's clock: real time, moved on by the test (the venue's stamps stay real)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() + self.offset


class AgesAfterReserve(CrashPoints):
    """Between the reserve transaction and the submit, the engine's time jumps past the quote
    age limit: the quote the reservation was approved on is stale at the final gate."""

    def __init__(self, clock: ShiftedClock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def hit(self, point: CrashPoint) -> None:
        if point is CrashPoint.AFTER_RESERVE:
            self.clock.offset += timedelta(seconds=self.seconds)


async def test_the_final_gate_expires_an_order_whose_quote_went_stale_through_the_simulator(
    database_url: URL,
) -> None:
    clock = ShiftedClock()
    limits = {"max_quote_age": "5s"}
    crash = AgesAfterReserve(clock, 6.0)
    async with running(database_url, "final-gate", limits, clock=clock, crash=crash) as run:
        intent = buy(A, BTC, "0.001", "20000", "stale")
        outcome, verdicts = await decide(run, intent)
        # reserved on the fresh quote it saw ...
        assert outcome == "reserved"
        assert verdicts["price_age"]["result"] == "pass"

        # ... and never sent: the final gate expired it, naming the check and its values
        async def expired() -> str | None:
            order = await run.engine.ledger.orders.get(client_order_id("tctl", intent.key))
            if order is None or order.state is not OrderState.EXPIRED:
                return None
            return order.last_error

        reason = await eventually(expired, message="the final gate should expire the order")
        # the age it saw (past the 6 s jump) and the limit it held it to
        found = re.fullmatch(
            r"final gate before submit: price_age: quote is ([0-9.]+)s old, limit 5s", reason
        )
        assert found is not None, reason
        assert Decimal(found[1]) >= 6
        assert run.state.orders() == []
