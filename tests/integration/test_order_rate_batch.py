"""``max_orders_per_minute`` holds within one batch: the orders a strategy has approved in the
batch being assessed count, not only those already submitted (a batch's orders are sent
together after every check, so none of them was submitted when the next was assessed)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.domain.risk import Limits
from engine.limits_book import LimitsBook
from engine.risk_gate import RiskGate
from engine.venues.paper import BTCUSDT, default_paper_venue
from tests.integration.test_execution import STRATEGY, Clock, buy, make_rig, quote


async def test_a_batch_cannot_send_more_orders_than_the_strategys_rate_allows(
    db_engine: AsyncEngine,
) -> None:
    clock = Clock()
    venue = default_paper_venue((BTCUSDT,), seed=3, clock=clock)
    venue.set_quote(quote(clock, "50000", "50001"))
    rig = await make_rig(db_engine, venue, clock)
    gate = rig.execution.gate
    assert isinstance(gate, RiskGate)
    gate.limits = LimitsBook(strategies={STRATEGY: Limits(max_orders_per_minute=2)})

    await rig.execution.process([buy(clock, price="49000", interval=f"i{n}") for n in range(3)])

    async with db_engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT interval_key, outcome, verdicts FROM decisions "
                    "WHERE strategy_id = :s ORDER BY interval_key"
                ),
                {"s": STRATEGY},
            )
        ).all()
    assert [(r.interval_key, r.outcome) for r in rows] == [
        ("i0", "reserved"),
        ("i1", "reserved"),
        ("i2", "denied"),
    ]
    [rate] = [v for v in rows[2].verdicts if v["check"] == "orders_per_minute"]
    assert (rate["result"], rate["limit"], rate["observed"]) == ("reject", "2", "2")
    assert len(await venue.open_orders(BTCUSDT)) == 2
