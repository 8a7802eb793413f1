"""The final gate before the wire: limits and freshness checked again on the newest state between
the reserve transaction and the submit (engine/execution/core.py ``_send``)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.crashpoints import CrashPoint, CrashPoints
from engine.domain.risk import Limits
from engine.domain.types import OrderState
from engine.limits_book import LimitsBook
from engine.risk_gate import RiskGate
from engine.venues.paper import BTCUSDT, default_paper_venue
from tests.integration.test_execution import STRATEGY, Clock, buy, coid_of, make_rig, quote


class AgesAfterReserve(CrashPoints):
    """Instead of crashing after the reserve transaction, let time pass there: the quote the
    reservation was approved on goes stale before the order reaches the final gate."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def hit(self, point: CrashPoint) -> None:
        if point is CrashPoint.AFTER_RESERVE:
            self.clock.advance(self.seconds)


async def test_the_final_gate_expires_an_order_whose_quote_went_stale_after_its_reservation(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    venue = default_paper_venue((BTCUSDT,), seed=3, clock=clock)
    venue.set_quote(quote(clock, "50000", "50001"))
    rig = await make_rig(db_engine, venue, clock, crash=AgesAfterReserve(clock, 6.0))
    gate = rig.execution.gate
    assert isinstance(gate, RiskGate)
    gate.limits = LimitsBook(strategies={STRATEGY: Limits(max_price_age=timedelta(seconds=5))})
    intent = buy(clock, price="49000")

    await rig.execution.process([intent])

    order = await rig.ledger.orders.get(coid_of(intent))
    assert order is not None
    # reserved on a fresh quote, never sent: expired by the final gate, naming the check
    assert order.state is OrderState.EXPIRED
    assert order.last_error is not None
    assert order.last_error.startswith("final gate before submit: price_age")
    assert await venue.open_orders(intent.symbol) == []
    async with db_engine.connect() as conn:
        outcome, verdicts = (
            await conn.execute(
                text("SELECT outcome, verdicts FROM decisions WHERE strategy_id = :s"),
                {"s": STRATEGY},
            )
        ).one()
    # the reservation itself passed the same check on the quote it saw
    assert outcome == "reserved"
    assert {"check": "price_age", "result": "pass"}.items() <= next(
        v for v in verdicts if v["check"] == "price_age"
    ).items()
