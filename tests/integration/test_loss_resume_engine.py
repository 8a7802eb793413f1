"""``daily_loss_resume = "next_day"`` in a running engine against the built-in Binance-protocol
simulator: the engine's own loop halts the account when the day's loss crosses the limit, lifts
the halt once its clock passes the day boundary (journaled as an action by ``risk``), and the
new day measures its loss from the new day-start mark, so trading resumes (the paper-venue
version, with the lift called by hand: test_portfolio_limits.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import URL

from engine.domain.ids import client_order_id
from engine.domain.types import OrderState, utc_now
from tests.helpers import eventually
from tests.integration.test_final_gate_engine import ShiftedClock
from tests.integration.test_portfolio_limits_engine import BTC, A, buy, decide, move, running


async def test_a_next_day_daily_loss_halt_lifts_itself_at_the_boundary_and_trading_resumes(
    database_url: URL,
) -> None:
    clock = ShiftedClock()
    limits = {"max_daily_loss": "50", "daily_loss_resume": "next_day"}
    # the lease is held on the engine's clock: a jump of hours must not expire it
    two_days = 2 * 86_400
    async with running(
        database_url, "loss-resume", limits, clock=clock, lease_ttl_s=two_days
    ) as run:
        engine = run.engine
        intent = buy(A, BTC, "0.1", "30000.5", "in")
        assert (await decide(run, intent))[0] == "reserved"

        async def filled() -> bool:
            order = await engine.ledger.orders.get(client_order_id("tctl", intent.key))
            return order is not None and order.state is OrderState.FILLED

        await eventually(filled, message="the buy should fill at the touch")
        await move(run, BTC, Decimal("29499.5"), Decimal("29500.5"))  # about 53 lost today

        async def halts() -> list[Any]:
            return await engine.ledger.controls.active()

        [halt] = await eventually(halts, message="the crossed daily loss should halt")
        assert halt.reason.startswith("daily_loss:")
        outcome, verdicts = await decide(run, buy(A, BTC, "0.001", "20000", "same-day"))
        assert outcome == "denied"
        assert verdicts["daily_loss"]["result"] == "reject"
        # that check reports the crossing again: the engine persists it (dated by its clock)
        # within half a second; the boundary comes after
        await eventually(lambda: engine.gate.halt_reason is None)

        # the engine's clock passes the next UTC midnight (the default day boundary)
        now = clock()
        boundary = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        clock.offset += boundary - now + timedelta(seconds=1)

        async def lifted() -> bool:
            return await engine.ledger.controls.active() == []

        await eventually(lifted, message="the halt should lift at the day boundary")
        [action] = [a for a in await engine.ledger.journal.read() if a.actor == "risk"]
        assert "lifted at the day boundary" in action.reason
        assert 'daily_loss_resume = "next_day"' in action.reason
        assert halt.reason in action.reason

        # a fresh quote (stamped on the engine's clock) and an order: the new day's loss is
        # measured from the mark at its start, so the position's old loss no longer counts
        await move(run, BTC, Decimal("29500.5"), Decimal("29501.5"))
        outcome, verdicts = await decide(run, buy(A, BTC, "0.001", "20000", "next-day"))
        assert outcome == "reserved", verdicts
        daily = verdicts["daily_loss"]
        assert (daily["result"], daily["limit"]) == ("pass", "50")
        assert Decimal(daily["observed"]) < 50
        assert await engine.ledger.controls.active() == []
        # one loss incident: the halted day's; the new day crossed nothing
        losses = [i for i in await engine.ledger.incidents.read() if i.kind == "loss_limit"]
        assert len(losses) == 1, [(i.opened_at, i.message) for i in losses]
        assert utc_now() < clock()  # the real day did not change: only the engine's clock did
